"""``devicepool pretrain``: train a universal device embedding on a simulated device population."""

from __future__ import annotations

import os

from ._common import UsageError, say

__all__ = ["cmd_pretrain"]


def cmd_pretrain(args):
    from dataclasses import fields

    from devicepool.protocol.pretrain import PretrainRecipe, pretrain

    if not os.path.isdir(args.microphones):
        raise UsageError(f"--microphones {args.microphones!r} is not a folder of impulse-response WAV files")
    if args.source is not None and not os.path.isdir(args.source):
        raise UsageError(f"--source {args.source!r} is not a folder of speech recordings")
    given = {"seed": args.seed, "n_devices": args.devices, "max_steps": args.steps,
             "backbone": args.backbone, "recordings_per_device": args.recordings}
    names = {f.name for f in fields(PretrainRecipe)}
    recipe = PretrainRecipe(**{k: v for k, v in given.items() if v is not None and k in names})
    if args.source is None:
        recipe = PretrainRecipe(**{**recipe.to_dict(), "real_speakers": (), "microphones": ()})
    say(args, f"devicepool pretrain: {recipe.n_devices} simulated devices, {recipe.max_steps} steps, "
              f"{recipe.backbone} backbone, in {args.output} (rerun the same command to resume)")
    path = pretrain(recipe, args.output, microphone_folder=args.microphones, source=args.source,
                    n_jobs=args.jobs, threads=args.threads, progress=not args.quiet,
                    log=lambda m: say(args, m))
    print(f"wrote {path}")
    return 0
