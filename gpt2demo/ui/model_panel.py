"""Which model runs, from where, on what device; and the banners a visitor must see.

Banners: the offline bundled model is in use (its text is much weaker), the
page is public through a share link without a password, or the share link
could not be made and the demo is local only.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2demo.ui.i18n import message
from gpt2demo.ui.service import ModelService


@dataclass
class Exposure:
    """How the server is reachable; filled in by the launcher, read by the page."""

    share_requested: bool = False
    has_auth: bool = False
    local_url: str = ""
    share_url: str | None = None  # None after launch when the tunnel could not be made

    @property
    def share_failed(self) -> bool:
        return self.share_requested and bool(self.local_url) and not self.share_url


def describe_model(service: ModelService, language: str) -> str:
    """One Markdown line: loading, failed, or the loaded model's facts."""
    if not service.ready.is_set():
        return message(language, "model_loading", spec=service.spec, device=service.device)
    if service.model is None:
        return message(language, "model_failed", error=service.error)
    facts = service.model.describe()
    return message(
        language,
        "model_ready",
        name=facts["name"],
        kind=message(language, f"kind_{facts['kind']}"),
        device=facts["device"],
        dtype=facts["dtype"],
        parameters=f"{facts['parameters']:,}",
        window=facts["window"],
        load_seconds=facts["load_seconds"],
    )


def describe_banners(service: ModelService, exposure: Exposure, language: str) -> str:
    """Markdown warnings for the top of the page; empty when there is nothing to warn about."""
    lines = []
    notice = service.model.describe()["fallback_notice"] if service.model is not None else ""
    if notice:
        lines.append(message(language, "fallback_banner", notice=notice))
    if exposure.share_requested and not exposure.has_auth:
        lines.append(message(language, "public_no_auth"))
    if exposure.share_failed:
        lines.append(message(language, "share_failed", url=exposure.local_url))
    elif exposure.share_url:
        lines.append(message(language, "share_url", url=exposure.share_url))
    return "\n\n".join(lines)
