"""``devicepool pretrain``: train a universal device embedding on a simulated device population."""

from __future__ import annotations

import os

from ._common import UsageError, say

__all__ = ["cmd_pretrain"]


def cmd_pretrain(args):
    from dataclasses import fields, replace

    from devicepool.datasets import microphone_files
    from devicepool.protocol.pretrain import PretrainRecipe, pretrain

    if not os.path.isdir(args.microphones):
        raise UsageError(f"--microphones {args.microphones!r} is not a folder of impulse-response WAV files")
    try:
        microphone_files(args.microphones)
    except ValueError as exc:
        raise UsageError(f"--microphones: {exc}") from None
    if args.source is not None and not os.path.isdir(args.source):
        raise UsageError(f"--source {args.source!r} is not a folder of speech recordings")
    given = {"seed": args.seed, "n_devices": args.devices, "max_steps": args.steps,
             "backbone": args.backbone, "recordings_per_device": args.recordings,
             "n_calibration_devices": args.calibration_devices, "n_synthetic": args.speakers}
    names = {f.name for f in fields(PretrainRecipe)}
    recipe = PretrainRecipe(**{k: v for k, v in given.items() if v is not None and k in names})
    if args.source is None:
        # synthetic speech only: nothing real to balance or to calibrate on
        recipe = replace(recipe, real_speakers=(), real_share=None, calibration_speech="all")
    say(args, f"devicepool pretrain: {recipe.n_devices} simulated devices, {recipe.max_steps} steps, "
              f"{recipe.backbone} backbone, in {args.output} (rerun the same command to resume)")
    path = pretrain(recipe, args.output, microphone_folder=args.microphones, source=args.source,
                    n_jobs=args.jobs, threads=args.threads, progress=not args.quiet,
                    log=lambda m: say(args, m))
    print(f"wrote {path}")
    return 0
