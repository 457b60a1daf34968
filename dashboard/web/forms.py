"""WTForms forms for every page that takes input; each POST form carries a CSRF token."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    DecimalField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional



def options(*pairs: tuple[object, str]) -> list[SelectChoice]:
    """Select options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]  # type: ignore[arg-type]


LABEL_CHOICES = options(("", "Any label"), ("Benign", "Benign"), ("Early", "Early"), ("Pre", "Pre"), ("Pro", "Pro"))
PER_PAGE_CHOICES = options((25, "25"), (50, "50"), (100, "100"), (200, "200"))


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class ActionForm(FlaskForm):
    """A POST button with nothing but its CSRF token (logout, acknowledge, halt, resume, roll back)."""


class UploadForm(FlaskForm):
    """A signed model package to register."""

    package = FileField("Model package (.tar.gz)", validators=[FileRequired("Choose a package file.")])


class RolloutForm(FlaskForm):
    """A staged rollout of one release to a set of nodes."""

    release_id = SelectField("Release", coerce=int, validators=[InputRequired()])
    target_mode = RadioField(
        "Targets",
        choices=options(("all", "All nodes"), ("zone", "One zone"), ("devices", "Chosen nodes")),
        default="all",
        validators=[InputRequired()],
    )
    zone = SelectField("Zone", choices=[], validate_choice=False, validators=[Optional()])
    nodes = SelectMultipleField("Nodes", choices=[], validate_choice=False, validators=[Optional()])
    canary_size = IntegerField("Canary group size", default=1, validators=[InputRequired(), NumberRange(min=1, max=10_000)])
    failure_threshold = IntegerField(
        "Failures tolerated", default=0, validators=[InputRequired(), NumberRange(min=0, max=10_000)],
        description="the rollout halts itself once more nodes than this have failed",
    )
    phases = StringField(
        "Phases after the canary", default="", validators=[Optional(), Length(max=200)],
        description="node counts or percentages of all targets, e.g. 2, 25%, 50%; the rest follow last",
    )
    soak_s = IntegerField("Soak between phases (s)", default=0, validators=[Optional(), NumberRange(min=0, max=604_800)])
    health_gate = BooleanField("Health gate between phases", default=True)
    start_at = DateTimeLocalField("Start at (UTC)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    confirm_model_change = BooleanField("Roll out even if classes or input specification change")


class ResultFilterForm(FlaskForm):
    """Filters of the results page; a GET form, so no CSRF token (it changes nothing)."""

    class Meta:
        csrf = False

    node = StringField("Node", validators=[Optional(), Length(max=64)])
    label = SelectField("Label", choices=LABEL_CHOICES, default="", validate_choice=False, validators=[Optional()])
    min_confidence = DecimalField("Min confidence", places=None, validators=[Optional(), NumberRange(min=0, max=1)])
    max_confidence = DecimalField("Max confidence", places=None, validators=[Optional(), NumberRange(min=0, max=1)])
    uncertain = SelectField(
        "Uncertain", choices=options(("", "Any"), ("yes", "Uncertain only"), ("no", "Certain only")), default="",
        validate_choice=False,
    )
    ood = SelectField(
        "Out of distribution",
        choices=options(("", "Any"), ("yes", "Needs review only"), ("no", "In distribution only")), default="",
        validate_choice=False,
    )
    since = DateTimeLocalField("From (UTC)", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()])
    until = DateTimeLocalField("To (UTC), excluded", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()])
    per_page = SelectField("Per page", choices=PER_PAGE_CHOICES, coerce=int, default=50, validate_choice=False)


class AlertFilterForm(FlaskForm):
    """Filter alerts by open or acknowledged."""

    class Meta:
        csrf = False

    state = SelectField(
        "Show", choices=options(("open", "Open"), ("acknowledged", "Acknowledged"), ("all", "All")), default="open",
        validate_choice=False,
    )


class RangeForm(FlaskForm):
    """Time range of the node page charts."""

    class Meta:
        csrf = False

    range = SelectField("Range", choices=options(("1h", "1 h"), ("24h", "24 h"), ("7d", "7 days")), default="24h",
                        validate_choice=False)
    since = DateTimeLocalField("From", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()])
    until = DateTimeLocalField("To", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()])


class AuditFilterForm(FlaskForm):
    """Filter the audit log by user or action."""

    class Meta:
        csrf = False

    actor = StringField("User", validators=[Optional(), Length(max=64)])
    action = StringField("Action", validators=[Optional(), Length(max=64)])


__all__ = [
    "ActionForm", "AlertFilterForm", "AuditFilterForm", "LoginForm", "RangeForm", "ResultFilterForm",
    "RolloutForm", "UploadForm",
]
