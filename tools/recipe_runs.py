"""The runs of the bundled recipe (tools/train_bundled.sh) and their folders under
models/training: which training cases there are, how a folder's prefix names its recipe
variant, the command that trains a run, and how far a run got. Pure Python, no library:
the LOO tools and tools/training_state.py share it."""
import csv
import json
import re
import struct
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A recipe variant's folder prefix: sG-[AUGMENTATION-][seedN-] (train_bundled.sh's SPACING,
# AUGMENTATION and SEED); no prefix is the recipe itself.
PREFIX = re.compile(r"s(?P<spacing>[0-9.]+)-(?:(?!seed)(?P<augmentation>[a-z]+)-)?(?:seed(?P<seed>[0-9]+)-)?")


def training_cases():
    """(name, CT path, mask path) of each training case, as tools/train_bundled.sh lists them."""
    listing = subprocess.run([str(ROOT / "tools" / "train_bundled.sh"), "cases"], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
    cases = []
    for line in listing.splitlines():
        name, pair = line.split(" ", 1)
        ct, mask = pair.split(",")
        cases.append((name, ROOT / ct, ROOT / mask))
    return cases


def variant(prefix):
    """(grid spacing, augmentation, seed) of a fold-folder prefix as strings: '' is the 3 mm
    recipe (anatomical augmentation, seed 0), "s4-" its 4 mm grid, "s3-seed1-" the 3 mm
    recipe with seed 1, "s3-elastic-" with the elastic augmentation (train_bundled.sh's
    SPACING, AUGMENTATION and SEED)."""
    match = PREFIX.fullmatch(prefix)
    if prefix and match is None:
        raise SystemExit(f"fold prefix {prefix!r} is not '', sG-, sG-AUGMENTATION-, sG-seedN- or sG-AUGMENTATION-seedN-")
    groups = match.groupdict() if match else {}
    return groups.get("spacing") or "3", groups.get("augmentation") or "anatomical", groups.get("seed") or "0"


def variant_label(prefix):
    """"3 mm", "4 mm", "3 mm seed 1", "3 mm elastic": how the tables name a fold prefix's models."""
    spacing, augmentation, seed = variant(prefix)
    return (f"{spacing} mm" + (f" {augmentation}" if augmentation != "anatomical" else "")
            + (f" seed {seed}" if seed != "0" else ""))


def fold_folder(name, prefix=""):
    """The fold's run folder: models/training/loo-NAME (V for IRCADb-17), or PREFIXloo-NAME
    for a variant's folds (e.g. "s4-" for the 4 mm grid)."""
    if not prefix and name == "ircadb1-17":
        return ROOT / "models" / "training" / "V"
    return ROOT / "models" / "training" / f"{prefix}loo-{name}"


def training_command(run, prefix=""):
    """The command that trains (or resumes, or writes again from its checkpoint) the run
    `run` ("F", "V" or "loo-NAME") of the recipe variant `prefix` into its folder."""
    spacing, augmentation, seed = variant(prefix)
    folder = "V" if run == "V" else f"{prefix}{run}"
    environment = ((f"SPACING={spacing} " if prefix else "")
                   + (f"AUGMENTATION={augmentation} " if augmentation != "anatomical" else "")
                   + (f"SEED={seed} " if seed != "0" else ""))
    return f"{environment}tools/train_bundled.sh {run} models/training/{folder}"


def fold_model(name, prefix=""):
    """The fold's trained model file. Only checkpoints are committed: on a fresh checkout a
    finished fold's model is written again, byte for byte, by rerunning its training command."""
    folder = fold_folder(name, prefix)
    model = folder / "model.safetensors"
    if not model.exists():
        run = "V" if folder.name == "V" else f"loo-{name}"
        raise SystemExit(f"{model.relative_to(ROOT)} is missing: write it from the committed checkpoint with "
                         f"`{training_command(run, prefix)}`")
    return model


def epochs_done(folder):
    log = folder / "log.csv"
    if not log.exists():
        return 0
    rows = list(csv.DictReader(log.open()))
    return int(rows[-1]["epoch"]) if rows else 0


def safetensors_header(data):
    """(the JSON header of the safetensors file's bytes `data`, its length in bytes)."""
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size]), size


def checkpoint_epochs(folder):
    """Epochs done by the run in `folder` as its checkpoint records them (0 without one)."""
    checkpoint = folder / "model.safetensors.checkpoint"
    if not checkpoint.exists():
        return 0
    header, _ = safetensors_header(checkpoint.read_bytes())
    return int(json.loads(header["__metadata__"]["liverseg.checkpoint"])["epochs_done"])
