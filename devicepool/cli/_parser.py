"""The argparse parser of the ``devicepool`` command (:func:`build_parser`)."""

from __future__ import annotations

import argparse
import math

from ._commands import CORPORA
from ._common import UsageError
from ._modelfile import PICKLE_RISK

__all__ = ["build_parser"]

_TSV_HELP = """\
Output: one line per file, tab-separated: file, device, probability, (runner-up device
probability), (the file's own sample rate, and 'resampled to N Hz' when it differs from
the model's). A recording the model cannot judge gets 'unknown' and the reason: shorter
than --min-seconds, (near) silent (below -60 dBFS), clipped (over 1 % of samples at full
scale), or recorded at a lower rate than the model's. A file that cannot be read gets
'error' and why; the others go on (--strict stops at the first) and the exit status is 1.
In the file and device columns a backslash, tab, newline and carriage
return are written \\\\, \\t, \\n and \\r (bytes that are not UTF-8 as \\xNN), so one line
is one file. --json gives one JSON document (model, model_devicepool_version: the
devicepool that wrote the model file, null for older files; classes, sample_rate,
predictions with file, status (ok, unknown or error), device, probability, runner_up,
runner_up_probability, probability_per_device (every class), native_rate, resampled; reasons
for unknown, error for error). A model without probabilities (gsv_svm: an SVM) prints 'score S' instead, its
decision values (JSON: probability null, score, runner_up_score). When the reader stops
early (| head -1) the command ends quietly with exit status 141, as a program killed by
SIGPIPE does.
"""

_COMPARE_HELP = """\
Output: the hypotheses (H1: the questioned recording was made with the device of the
reference recordings; H2: with another device of the relevant population, the devices of
the calibration data) and a caution on '# ' lines, then one line per questioned file,
tab-separated: file (escaped as in predict), log10 LR (2 decimals) and its verbal
equivalent on the ENFSI (2015) scale. The LR is the strength of the evidence, not the
probability that H1 is true. --json gives one document (model, hypotheses, caution,
verbal_scale, references, questioned with file, llr, lr, verbal, and calibration, bounds and
warnings). The LRs are bounded to what the calibration data support (ELUB); a line says so
when a result sits at a bound. Recordings outside what the calibration covered (too short,
(near) silent, too low a rate, another speaking mode) are named on '# warning:' lines.
Without --model the shipped pretrained embedding and its calibration are used.
"""


class _Parser(argparse.ArgumentParser):
    """Errors are a :class:`UsageError` naming the (sub)command and carrying its usage."""

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the subcommand they were given to
            self._subcommand(namespace).error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _subcommand(self, namespace):
        """The parser of the subcommand chosen in ``namespace`` (self when none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(namespace, action.dest, None), self)
        return self

    def error(self, message):
        exc = UsageError(f"{message} (see '{self.prog} --help')")
        exc.usage = self.format_usage()
        raise exc


def _models_arg(text):
    from devicepool.protocol import registered_models

    names = [n.strip() for n in text.replace(",", " ").split() if n.strip()]
    for n in names:
        if n not in registered_models():
            raise argparse.ArgumentTypeError(
                f"unknown model {n!r} (choose from {', '.join(registered_models())})")
    if not names:
        raise argparse.ArgumentTypeError("no model named")
    return names


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# --------------------------------------------------------------------------- the parser


def _log_args(p, default):
    """-v/--verbose and --debug (on the command and on every subcommand: either place works)."""
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="say more of what the library does (its log at INFO, on stderr)")
    p.add_argument("--debug", action="store_true", default=default,
                   help="its log at DEBUG, and the full traceback of an error instead of one line")


def _common_args(sp, seed=True):
    sp.add_argument("-q", "--quiet", action="store_true",
                    help="no progress bars or messages (warnings and errors still show)")
    _log_args(sp, argparse.SUPPRESS)  # not given here: the command's own -v/--debug stands
    sp.add_argument("--threads", type=_positive_int, default=None,
                    help="torch intra-op threads in this process (default: torch's choice; "
                         "1 is much faster when the cores are shared with other work)")
    if seed:
        sp.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")


def _wait_arg(sp):
    sp.add_argument("--wait", action="store_true",
                    help="when another run is writing into the output folder (it holds its lock), "
                         "wait for it to end instead of failing at once")


def _far_arg(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1), got {text!r}")
    return value


def _corpus_args(sp, training=True):
    sp.add_argument("--corpus", required=True, choices=CORPORA, help="corpus layout")
    sp.add_argument("--root", help="corpus folder (for demo: optional folder of real speech "
                    "used as the source, e.g. fsdd/recordings)")
    sp.add_argument("--pattern", help="path pattern for --corpus folder, e.g. "
                    "'{device}/{mode}/{speaker}_{utterance}.wav'")
    sp.add_argument("--skip-unmatched", action="store_true",
                    help="with --corpus folder: leave out audio files the --pattern does not match "
                         "(default: an error naming them)")
    sp.add_argument("--sample-rate", metavar="HZ", type=_positive_int, default=None,
                    help="read the corpus at this rate, resampling files at other rates (needed for "
                         "a folder of mixed rates; default: the files' own rate, 16000 for mobiphone)")
    if not training:
        return
    sp.add_argument("--max-epochs", type=_positive_int, default=None,
                    help="override the models' max_epochs")
    sp.add_argument("--device", default=None,
                    help="torch device, e.g. cuda (default: the models' default)")


def _lr_args(sp, default=None):
    """--scoring and --calibration of the likelihood-ratio system."""
    suffix = " (default {})"
    sp.add_argument("--scoring", choices=("plda", "cosine", "snorm"), default=default and default[0],
                    help="score of a questioned recording against the references" +
                         (suffix.format(default[0]) if default else ""))
    sp.add_argument("--calibration", choices=("logistic", "isotonic"), default=default and default[1],
                    help="score to log10 LR map" + (suffix.format(default[1]) if default else ""))


def _add_demo(sub):
    d = sub.add_parser("demo", help="the whole protocol on the embedded corpus (< 5 min)")
    d.add_argument("--out", default="devicepool-demo", help="output folder (default ./devicepool-demo)")
    d.add_argument("--quick", action="store_true", help="tiny corpus and 2 epochs (a smoke test)")
    d.add_argument("--n-jobs", type=_positive_int, default=None, help="parallel fits")
    _wait_arg(d)
    _common_args(d)


def _add_evaluate(sub, models):
    e = sub.add_parser("evaluate", help="the protocol on a corpus (resumable)")
    _corpus_args(e)
    e.add_argument("--models", type=_models_arg, default=None,
                   help=f"comma-separated models (default: all registered, {','.join(models)}; "
                        "with --forensic one model, default da_cnn)")
    e.add_argument("--conditions", default=None,
                   help="comma-separated among MOBI,N,W,N/W,W/N (default: all the corpus serves)")
    e.add_argument("--n-splits", type=_positive_int, default=3, help="speaker folds (default 3)")
    e.add_argument("--out", default=None, help="output folder (default ./devicepool-results; "
                   "with --forensic ./devicepool-forensic)")
    e.add_argument("--n-jobs", type=_positive_int, default=None,
                   help="parallel fits (with --scheduler: default all the cluster's worker threads)")
    e.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the fits on the dask.distributed cluster of this scheduler, e.g. "
                        "tcp://10.0.0.5:8786 (needs devicepool[distributed]; see docs/cluster.md)")
    e.add_argument("--fresh", action="store_true", help="ignore finished results in --out")
    e.add_argument("--allow-unknown-speakers", action="store_true",
                   help="evaluate a corpus whose speakers are unknown (a --pattern without "
                        "{speaker}) with folds of utterance groups; they are not speaker-disjoint")
    e.add_argument("--mode-augmentation", nargs="?", const="both", default=False,
                   choices=("both", "vocalise", "whisperise"), metavar="{both,vocalise,whisperise}",
                   help="also train on copies of the training recordings in the other speaking "
                        "mode: whisperised neutral and vocalised whispered ones (both, when no "
                        "direction is given), or one direction only (devicepool's extension beyond the "
                        "paper; see docs/protocol.md)")
    e.add_argument("--forensic", action="store_true",
                   help="run the forensic validation protocol instead (same-device likelihood "
                        "ratios on held-out speakers: Cllr, EER, Tippett; see docs/forensic.md)")
    e.add_argument("--mode", choices=("neutral", "whisper", "all"), default=None,
                   help="with --forensic: the speaking mode (default neutral)")
    _lr_args(e)
    e.add_argument("--far", type=_far_arg, default=None,
                   help="with --forensic: the open-set false acceptance rate (default 0.05)")
    _wait_arg(e)
    _common_args(e)


def _add_train(sub, models):
    t = sub.add_parser("train", help="fit features + classifier on a whole corpus and save it")
    _corpus_args(t)
    t.add_argument("--model", default="da_cnn", choices=models, help="model (default da_cnn)")
    t.add_argument("--mode", choices=("all", "neutral", "whisper"), default="all",
                   help="train on this speaking mode only (default all)")
    t.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the model file to write, e.g. model.pt: weights only, never code; checked "
                        "before training (missing folders are created), written atomically "
                        "(a temporary .FILE.XXXXXXXX.tmp, then renamed; one left by an interrupted run, or "
                        "its FILE.tmp of devicepool 0.5 or earlier, is removed)")
    t.add_argument("--no-validation", action="store_true",
                   help="skip the validation fit (default: fit once without 20 %% of the speakers, "
                        "at least one, and report the accuracy on their recordings beside chance, "
                        "then fit the saved model on everything; it roughly doubles the time)")
    t.add_argument("--skip-task-check", action="store_true",
                   help="train even when the recordings group by {speaker} rather than by {device} "
                        "(default: an error, the --pattern fields are probably swapped)")
    t.add_argument("--allow-pickle", action="store_true",
                   help="save a model that the weights-only file cannot hold (a registered model "
                        f"whose classifier is not a devicepool network) as a pickle; {PICKLE_RISK}")
    _common_args(t)


def _add_predict(sub):
    r = sub.add_parser("predict", help="which device recorded each file", epilog=_TSV_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("model", help="a model file written by 'devicepool train' (e.g. model.pt)")
    r.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    r.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    r.add_argument("--allow-pickle", action="store_true",
                   help=f"also load a pickle (a joblib model file of an older devicepool): {PICKLE_RISK}")
    r.add_argument("--strict", action="store_true",
                   help="stop at the first file that cannot be read (default: report it on its line "
                        "and go on; the exit status is 1 when any file failed)")
    r.add_argument("--min-seconds", type=float, default=0.5, metavar="S",
                   help="answer 'unknown' for recordings shorter than S seconds (default 0.5)")
    r.add_argument("--closed-set", action="store_true",
                   help="always name one of the model's devices (default: 'unknown' for a recording "
                        "unlike every device the model was trained on, judged by the pretrained device "
                        "embedding against references kept in the model file by 'devicepool train')")
    r.add_argument("--allow-lower-rate", action="store_true",
                   help="judge files recorded at a lower rate than the model's (default: 'unknown'; "
                        "upsampling cannot restore the band the model judges)")
    _common_args(r, seed=False)


def _add_info(sub):
    r = sub.add_parser("info", help="what a model file holds: devices, training, validation accuracy",
                       description="Describe a model file of 'devicepool train' (or 'calibrate'): its "
                       "model, devices and their training recordings, the speaker-disjoint validation "
                       "accuracy beside chance, the open-set gate and the forensic calibration.")
    r.add_argument("model", help="a model file (e.g. model.pt)")
    r.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    r.add_argument("--allow-pickle", action="store_true", help=f"also load a pickle: {PICKLE_RISK}")
    _common_args(r, seed=False)


def _add_calibrate(sub):
    c = sub.add_parser("calibrate", help="fit a model file's likelihood-ratio calibration",
                       description="Fit a same-device likelihood-ratio system on a calibration "
                       "corpus and write the model file with it. The calibration corpus is the "
                       "relevant population of the LRs: recordings of devices like the casework's, "
                       "never the questioned recordings.")
    c.add_argument("--model", default=None, metavar="FILE",
                   help="a model file of 'devicepool train', or an embedding bundle (default: the "
                        "shipped pretrained embedding; the output is then an embedding bundle with "
                        "your calibration)")
    _corpus_args(c, training=False)
    c.add_argument("--mode", choices=("all", "neutral", "whisper"), default="all",
                   help="calibrate on this speaking mode only (default all)")
    _lr_args(c, default=("plda", "logistic"))
    c.add_argument("--lda-dim", type=_positive_int, default=None,
                   help="LDA dimensions before scoring (at most n_devices - 1; default none)")
    c.add_argument("--n-references", type=_positive_int, default=3,
                   help="reference recordings per calibration pair (default 3; match the casework)")
    c.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the calibrated model file to write (weights only, written atomically; "
                        "may be --model itself)")
    c.add_argument("--allow-pickle", action="store_true",
                   help=f"also read a pickled --model (the output is weights only): {PICKLE_RISK}")
    _common_args(c)


def _add_compare(sub):
    r = sub.add_parser("compare", help="log10 LR that questioned recordings come from one device",
                       epilog=_COMPARE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--model", default=None, metavar="FILE",
                   help="a model file of 'devicepool calibrate' or an embedding bundle of 'devicepool "
                        "pretrain' (default: the shipped pretrained embedding and its calibration, "
                        "no training needed)")
    r.add_argument("--reference", nargs="+", required=True, metavar="FILE",
                   help="recordings made with ONE device (e.g. the seized phone)")
    r.add_argument("--questioned", nargs="+", required=True, metavar="FILE",
                   help="the recordings in question")
    r.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    r.add_argument("--allow-pickle", action="store_true",
                   help=f"also load a pickle: {PICKLE_RISK}")
    _common_args(r, seed=False)


def _add_pretrain(sub):
    r = sub.add_parser("pretrain", help="train a device embedding on thousands of simulated devices",
                       description="Pretrain a universal device embedding (docs/pretrained.md): draw "
                       "a population of simulated devices from measured microphone responses "
                       "(random EQ, codecs, rates, noise, gain, clipping, AGC), record synthetic and "
                       "real speech through them, train an embedding network with an additive angular "
                       "margin loss, fit its scorer and calibration on disjoint simulated devices, "
                       "and write an embedding bundle (weights only). Resumable: rerun the same "
                       "command; Ctrl-C writes a checkpoint first.")
    r.add_argument("--microphones", required=True, metavar="DIR",
                   help="folder of measured microphone impulse responses (WAV); the 12 of the "
                        "default corpus are left out")
    r.add_argument("--source", default=None, metavar="DIR",
                   help="folder of real speech, Free Spoken Digit Dataset naming "
                        "({digit}_{speaker}_{index}.wav); without it, synthetic speech only")
    r.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="working folder: features, checkpoint, train_log.jsonl, device_embedding.pt")
    r.add_argument("--devices", type=_positive_int, default=None, help="training devices (default 3000)")
    r.add_argument("--recordings", type=_positive_int, default=None,
                   help="recordings per training device (default 12)")
    r.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps (default 12000)")
    r.add_argument("--calibration-devices", type=_positive_int, default=None,
                   help="simulated devices of the calibration, disjoint from the training ones (default 300)")
    r.add_argument("--speakers", type=_positive_int, default=None,
                   help="synthetic speakers of the speech sources (default 400)")
    r.add_argument("--backbone", choices=("ecapa", "da_cnn"), default=None,
                   help="embedding network (default ecapa)")
    r.add_argument("--jobs", type=_positive_int, default=1, help="processes for the simulation")
    _common_args(r)


def build_parser():
    """The argparse parser of the ``devicepool`` command."""
    from devicepool import __version__
    from devicepool.protocol import registered_models

    models = registered_models()
    p = _Parser(prog="devicepool", description="Recording-device classification from speech "
                "(SA-CNN, DA-CNN, DFT-CNN): the paper's protocol, training, prediction "
                "and forensic comparison (likelihood ratios).")
    p.add_argument("--version", action="version", version=f"devicepool {__version__}")
    _log_args(p, False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_demo(sub)
    _add_evaluate(sub, models)
    _add_train(sub, models)
    _add_predict(sub)
    _add_info(sub)
    _add_calibrate(sub)
    _add_compare(sub)
    _add_pretrain(sub)
    return p
