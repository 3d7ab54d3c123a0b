"""GET /models/<name>/canary; admin PUT (set a share) and DELETE (abort) of the canary."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.canary import service
from app.canary.schemas import CanaryRequestSchema, CanarySchema
from app.json_body import json_required
from app.prediction import spec_or_404

blp = Blueprint(
    "canary",
    __name__,
    url_prefix="/models",
    description="Canary: a share of live traffic answered by @challenger, with a way back.",
)


@blp.route("/<string:name>/canary")
class Canary(MethodView):
    """The canary of one model."""

    @blp.response(200, CanarySchema)
    @blp.alt_responses(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """The share of unpinned traffic routed to @challenger (0 when there is no canary)."""
        return service.state(spec_or_404(name))

    @admin_required
    @json_required
    @blp.doc(security=[BEARER_AUTH])
    @blp.arguments(CanaryRequestSchema, example={"share": 0.1})
    @blp.response(200, CanarySchema)
    @blp.alt_responses(400, 401, 403, 404, 409, 413, 415, 503)
    def put(self, body: dict[str, float], name: str) -> dict[str, Any]:
        """Route a share (0 to 0.5) of unpinned requests to the current @challenger. Admin only.

        The challenger is loaded in this worker first (409 when it cannot serve, 409 when the
        model has no challenger). Routing is sticky per `X-Client-Key` header (else per
        request id); responses name the version that answered (`"alias": "challenger"`). Every
        worker applies the change within MODEL_REFRESH_SECONDS. When @challenger moves or is
        promoted, the canary stops.
        """
        return service.set_share(spec_or_404(name), body["share"])

    @admin_required
    @blp.doc(security=[BEARER_AUTH])
    @blp.response(200, CanarySchema)
    @blp.alt_responses(401, 403, 404, 503)
    def delete(self, name: str) -> dict[str, Any]:
        """Abort the canary: the champion answers every request again. Admin only."""
        return service.abort(spec_or_404(name))
