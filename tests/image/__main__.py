"""``python -m tests.image [--boot]``: build the test image verbosely, optionally boot it.

With ``--boot`` the guest boots with no master behind 10.0.2.2 and prints its report; the
pytest slow tests (``pytest -m slow tests/image``) run the whole enrolment instead.
"""

from __future__ import annotations

import argparse
import sys

from tests.image import harness
from tests.image.vm import HOST_FROM_GUEST, Guest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image", description=__doc__)
    parser.add_argument("--boot", action="store_true", help="boot the disk and print the report")
    ns = parser.parse_args(argv)
    problems = harness.host_problems(boot=ns.boot)
    if problems:
        print("cannot run here: " + "; ".join(problems), file=sys.stderr)
        return 2
    image = harness.build_image({"AUTOPI_MASTER": HOST_FROM_GUEST, "AUTOPI_FLEET": "manual"})
    print(f"root filesystem: {image.rootfs}\ndisk: {image.disk}\nlog: {image.log}")
    if ns.boot:
        guest = Guest(image, image.work / "console.log")
        guest.start()
        try:
            for key, found in guest.report(timeout=420).items():
                print(f"{key}: {', '.join(found)}")
        finally:
            guest.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
