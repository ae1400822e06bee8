"""Render alignlab reports and the runs index in headless Chromium, as PNGs to look at.

    python scripts/screenshot_reports.py                 # sample: quick demo (sft, prefs) → runs/screenshots/
    python scripts/screenshot_reports.py RUNS_DIR        # RUNS_DIR/report.html, one run's report, RUNS_DIR/index.html
    python scripts/screenshot_reports.py RUNS_DIR --all  # every report.html under RUNS_DIR

Needs `chromium` (Debian: apt-get install chromium) or google-chrome on PATH. Pages are shot at
--width with a tall window and the blank space below the content is cropped. Also prints any
console message the page logged (a clean page logs none).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str | None:
    """The first headless-capable Chromium on PATH, or None."""
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def chromium_args(exe: str) -> list[str]:
    """Headless flags that work as root in a container (no sandbox, no GPU, no first-run UI)."""
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000"]


def console_messages(stderr: str) -> list[str]:
    """The page's console messages (errors, warnings, logs) from Chromium's stderr log."""
    return [line.split("CONSOLE", 1)[1] for line in stderr.splitlines() if ":CONSOLE" in line]


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 12000) -> list[str]:
    """Shoot `html` to `png` (cropped to the content); returns the page's console messages."""
    exe = browser()
    if exe is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install -y chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([*chromium_args(exe), f"--user-data-dir={profile}", f"--window-size={width},{height}",
                              f"--screenshot={png}", html.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    if not png.exists():
        raise SystemExit(f"chromium wrote no screenshot for {html}:\n{out.stderr[-2000:]}")
    crop_blank_bottom(png)
    return console_messages(out.stderr)


def crop_blank_bottom(png: Path, margin: int = 24) -> None:
    """Cut the rows below the last non-background row (the window is taller than most pages)."""
    from PIL import Image, ImageChops

    img = Image.open(png).convert("RGB")
    bg = Image.new("RGB", img.size, img.getpixel((img.width - 1, img.height - 1)))
    box = ImageChops.difference(img, bg).getbbox()
    if box:
        img.crop((0, 0, img.width, min(img.height, box[3] + margin))).save(png)


def make_sample(root: Path) -> None:
    """A quick demo (SFT and preferences stages: a reward model, DPO and Cal-DPO runs)."""
    if not (root / "demo" / "report.html").exists():
        subprocess.run([sys.executable, "-m", "alignlab.cli", "demo", "--quick", "--stages", "sft", "prefs",
                        "--out", str(root / "demo")], check=True, cwd=REPO)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs_dir", nargs="?", help="folder of runs (default: make a sample in runs/screenshots)")
    ap.add_argument("--out", help="folder for the PNGs (default RUNS_DIR/png)")
    ap.add_argument("--all", action="store_true", help="every report.html under RUNS_DIR, not just two")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=12000, help="window height (blank space is cropped)")
    a = ap.parse_args()
    root = Path(a.runs_dir) if a.runs_dir else REPO / "runs" / "screenshots"
    if not a.runs_dir:
        make_sample(root)
    from alignlab.runs_index import write_index

    index, _ = write_index(root)
    reports = sorted(root.rglob("report.html"), key=lambda p: (len(p.parts), str(p)))
    pages = [index] + (reports if a.all else reports[:1] + [r for r in reports[1:] if (r.parent / "final").is_dir()][:1])
    out = Path(a.out) if a.out else root / "png"
    failed = False
    for page in pages:
        name = "index" if page == index else str(page.parent.relative_to(root)).replace("/", "_") or "report"
        png = out / f"{name}.png"
        messages = screenshot(page, png, a.width, a.height)
        print(f"{png}  ({page})")
        for m in messages:
            failed = True
            print(f"  console{m}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
