"""Ship a pretrained embedding bundle inside the package, with its manifest.

Usage::

    python bench/ship_pretrained.py WORKDIR --command "devicepool pretrain ..."

Copies ``WORKDIR/device_embedding.pt`` to ``devicepool/pretrained/device_embedding.pt`` and
writes ``devicepool/pretrained/MANIFEST.json``: the file's SHA-256, the recipe it records,
the command that made it, the training log's wall time and step count, and the machine.
``tests/test_pretrained.py`` checks that the shipped file is the one the manifest names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine_description  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir")
    p.add_argument("--command", required=True, help="the devicepool pretrain command that made it")
    p.add_argument("--wall-seconds", type=float, default=None,
                   help="total wall time of the command (simulation + training + back end)")
    args = p.parse_args(argv)
    from devicepool.estimators.embedding import read_bundle

    work = Path(args.workdir)
    src = work / "device_embedding.pt"
    bundle = read_bundle(src)
    dest_dir = ROOT / "devicepool" / "pretrained"
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / "device_embedding.pt"
    shutil.copyfile(src, dest)
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]
    manifest = {
        "file": "device_embedding.pt",
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "bytes": dest.stat().st_size,
        "recipe": json.loads(bundle["recipe"]),
        "provenance": json.loads(bundle["provenance"]),
        "validation": json.loads(bundle["validation"]),
        "command": args.command,
        "training": {"steps": log[-1]["step"], "final_loss": log[-1]["loss"],
                     "training_wall_s_last_run": log[-1]["elapsed_s"],
                     "total_wall_s": args.wall_seconds},
        "machine": machine_description(),
    }
    (dest_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"shipped {dest} ({manifest['bytes']} bytes, sha256 {manifest['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
