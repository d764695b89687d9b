"""Forms of the reviewer UI. The label fields are generated from the queue's label schema; the
labels themselves are validated by escalation.labels (through transitions.resolve), the same
code the API uses."""

from __future__ import annotations

import json

from django import forms

from escalation.models import Decision, Priority, Queue, Status
from escalation.queries import InboxFilters


class InboxFilterForm(forms.Form):
    queue = forms.SlugField(required=False)
    priority = forms.ChoiceField(required=False, choices=[("", "any")] + Priority.choices)
    status = forms.ChoiceField(
        required=False,
        choices=[("", "open and claimed"), (Status.OPEN, "Open"), (Status.CLAIMED, "Claimed")],
    )
    agent = forms.CharField(required=False, max_length=100)
    sla = forms.ChoiceField(
        required=False,
        label="SLA",
        choices=[("", "any"), ("breached", "Breached"), ("at_risk", "At risk")],
    )
    mine = forms.BooleanField(required=False, label="Claimed by me")
    q = forms.CharField(required=False, max_length=200, label="Search")

    def filters(self) -> InboxFilters:
        """The valid filters; an invalid one is dropped on its own, not all of them."""
        self.is_valid()
        data = self.cleaned_data
        return InboxFilters(
            **{
                name: data.get(name) or InboxFilters.__dataclass_fields__[name].default
                for name in InboxFilters.__dataclass_fields__
            }
        )


def _label_field(spec: dict) -> forms.Field:
    common = {
        "required": spec["required"],
        "label": spec["title"],
        "help_text": spec["description"],
    }
    kind = spec["kind"]
    if kind == "choice":
        return forms.ChoiceField(choices=[("", "—")] + [(c, c) for c in spec["choices"]], **common)
    if kind == "multi":
        return forms.MultipleChoiceField(
            choices=[(c, c) for c in spec["choices"]], widget=forms.CheckboxSelectMultiple, **common
        )
    if kind == "boolean":
        # Yes / No / unset: a required boolean must be answered, not defaulted to "no".
        return forms.NullBooleanField(widget=forms.NullBooleanSelect, **common)
    if kind == "number":
        field_class = forms.IntegerField if spec["integer"] else forms.FloatField
        return field_class(min_value=spec["minimum"], max_value=spec["maximum"], **common)
    return forms.CharField(
        max_length=spec["max_length"],
        widget=forms.Textarea(attrs={"rows": 2})
        if not spec["max_length"] or spec["max_length"] > 120
        else None,
        **common,
    )


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=Decision.choices)
    final_action = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
        label="Final action (JSON)",
    )
    note = forms.CharField(
        required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}), label="Note"
    )
    claim_token = forms.UUIDField(widget=forms.HiddenInput)
    # QA samples only: the reviewer flags the agent's action as critical.
    critical = forms.BooleanField(required=False)

    def __init__(self, *args, queue: Queue, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.label_specs = queue.label_fields()
        for spec in self.label_specs:
            self.fields[f"label_{spec['name']}"] = _label_field(spec)

    def label_fields(self) -> list[dict]:
        """[{field, kind}] in schema order; multi-choice fields render as a fieldset."""
        return [
            {"field": self[f"label_{spec['name']}"], "kind": spec["kind"]}
            for spec in self.label_specs
        ]

    def clean_final_action(self):
        text = self.cleaned_data["final_action"].strip()
        # Only Modify uses the editor: a half-edited text must not block Approve or Reject.
        if not text or self.cleaned_data.get("decision") != Decision.MODIFY:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("the final action must be a JSON object")
        return value

    def label_values(self) -> dict:
        """The labels as the schema expects them; unanswered optional fields are left out."""
        values = {}
        for spec in self.label_specs:
            value = self.cleaned_data.get(f"label_{spec['name']}")
            if value in (None, "", []):
                continue
            values[spec["name"]] = value
        return values

    def add_domain_errors(self, errors: dict) -> None:
        """Errors from transitions.resolve(), shown next to the fields they belong to."""
        for field, message in errors.items():
            if field == "labels" and isinstance(message, dict):
                for name, text in message.items():
                    target = f"label_{name}" if f"label_{name}" in self.fields else None
                    self.add_error(target, text)
            elif field in self.fields:
                self.add_error(field, message)
            else:
                self.add_error(None, f"{field}: {message}")


class TransferForm(forms.Form):
    queue = forms.ModelChoiceField(
        queryset=Queue.objects.none(), to_field_name="slug", empty_label=None
    )
    reason = forms.CharField(max_length=500, required=False)
    claim_token = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, current: Queue, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].queryset = (
            Queue.objects.filter(is_active=True).exclude(pk=current.pk).order_by("slug")
        )
