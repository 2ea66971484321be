"""The audit trail page."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import Q
from django.views.generic import TemplateView

from apps.core.permissions import restrict
from apps.core.views import paginate

from .models import AuditEntry


class AuditListView(LoginRequiredMixin, TemplateView):
    """Audit entries of the user's teams (all for superusers), newest first, searchable."""

    template_name = "audit/list.html"

    def get_context_data(self, **kwargs):
        entries = restrict(AuditEntry.objects.all(), self.request.user)
        q = self.request.GET.get("q", "").strip()
        if q:
            entries = entries.filter(
                Q(username__icontains=q) | Q(action__icontains=q) | Q(object_repr__icontains=q)
            )
        outcome = self.request.GET.get("outcome", "")
        if outcome:
            entries = entries.filter(outcome=outcome)
        page, query = paginate(self.request, entries)
        return super().get_context_data(page=page, query=query, q=q, outcome=outcome, **kwargs)
