"""Stage ``publish-<zoo>``: the zoo's ``index.json`` and ``README.md`` table from its packaged models."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from zoo.config import Params
from zoo.stages.package import ENTRY, read_package, too_large

log = logging.getLogger("zoo.stages")


def publish(p: Params, zoo: str) -> None:
    """Join the packaged models of a zoo (``<dir>/<model>/entry.json``) into ``<dir>/index.json`` and the zoo's
    ``README.md`` table; refuses a zoo whose checkpoints exceed ``max_mib``, before anything is written."""
    from zoo import cards, hub

    z = p.zoos[zoo]
    out = Path(z.dir)
    entries = {model: read_package(p, zoo, model) for model in z.models}
    sizes = {m: sum(v.get("size", 0) for v in e["variants"].values()) for m, e in entries.items()}
    if sum(sizes.values()) > z.max_mib * 2**20:
        listed = ", ".join(f"{m} {b / 2**20:.1f} MiB" for m, b in sorted(sizes.items(), key=lambda kv: -kv[1]))
        raise too_large(p, zoo, f"zoo {zoo!r}", sum(sizes.values()), "the largest models", listed)
    for d in sorted(out.glob(f"*/{ENTRY}")):
        if d.parent.name not in entries:
            log.warning("%s: not a model of zoo %r (params.yaml zoos.%s.models) and not in its index: remove it",
                        d.parent, zoo, zoo)
    index: dict[str, Any] = {"schema": hub.SCHEMA, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "models": entries}
    if z.remote:
        index["remote"] = z.remote
    hub.write_index(index, out / "index.json")
    cards.render_zoo_readme(index, out)
    log.info("published %d models (%d checkpoints) in %s", len(entries),
             sum("file" in v for e in entries.values() for v in e["variants"].values()), out / "index.json")
