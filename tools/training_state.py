#!/usr/bin/env python3
"""Where each run of the bundled recipe stands (models/training: F, V, the leave-one-out
folds and their variants sG-[AUG-][seedN-]), and the command that resumes it.

    python3 tools/training_state.py [--epochs 300]

One line per run: the epoch its log reached, the epoch its checkpoint records, and "done",
"training" (a liverseg-cli process, running or paused, writes there), or "resume with:
COMMAND". A run whose log and checkpoint disagree is reported as such and makes the exit
status 1: commit a run's folder only when they agree. A running process may be caught
between its two writes, so pause it first (`pkill -STOP -f "liverseg-cli train"`) and
then run this. Folders of other experiments (e.g. aug-*) are not listed.
"""
import argparse
import re
import subprocess
import sys

from recipe_runs import PREFIX, ROOT, checkpoint_epochs, epochs_done, training_command

RUN = re.compile(rf"(?P<prefix>{PREFIX.pattern})?(?P<run>F|V|loo-[a-z0-9-]+)")


def recipe_run(folder_name):
    """(prefix, run) of a recipe run's folder name, or None for another experiment's folder."""
    match = RUN.fullmatch(folder_name)
    return None if match is None else (match.group("prefix") or "", match.group("run"))


def training_now():
    """The command lines of the liverseg-cli train processes running now."""
    listing = subprocess.run(["pgrep", "-af", "liverseg-cli train"], capture_output=True, text=True).stdout
    return listing.splitlines()


def trained_now(folder, running):
    """Whether one of the `running` liverseg-cli command lines writes the run in `folder`."""
    out = re.compile(rf"--out (\S*/)?{re.escape(folder.name)}/model\.safetensors(\s|$)")
    return any(out.search(line) for line in running)


def state(folder, epochs, running):
    """(log epoch, checkpoint epoch, status) of the run in `folder`; status is "mismatch"
    (they disagree), "training", "done" or "resumable"."""
    logged, saved = epochs_done(folder), checkpoint_epochs(folder)
    if logged != saved:
        return logged, saved, "mismatch"
    if trained_now(folder, running):
        return logged, saved, "training"
    return logged, saved, "done" if saved >= epochs else "resumable"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=300, help="a run is done at this epoch (train_bundled.sh's EPOCHS)")
    args = parser.parse_args()
    running = training_now()
    failed = False
    for folder in sorted((ROOT / "models" / "training").iterdir()):
        parsed = recipe_run(folder.name) if folder.is_dir() else None
        if parsed is None or not (folder / "log.csv").exists():
            continue
        prefix, run = parsed
        logged, saved, status = state(folder, args.epochs, running)
        line = f"{folder.name:<40} log {logged:>3}  checkpoint {saved:>3}  "
        if status == "resumable":
            line += f"resume with: {training_command(run, prefix)}"
        elif status == "mismatch":
            line += "MISMATCH: the log and the checkpoint disagree; do not commit this folder as it is"
            if trained_now(folder, running):
                line += " (its process may be between its two writes: pause it and look again)"
            failed = True
        else:
            line += status
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
