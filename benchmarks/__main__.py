"""python -m benchmarks run [--quick] [--only NAME ...] [--repeats N]: measure, then write
benchmarks/results.json and the generated section of benchmarks/RESULTS.md (issue 18)."""

import argparse
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

from benchmarks import suite  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run the benchmarks and write results.json and RESULTS.md")
    run.add_argument("--quick", action="store_true", help="smaller sizes and fewer epochs (minutes, not hours)")
    run.add_argument("--only", nargs="+", choices=sorted(suite.BENCHMARKS), metavar="NAME",
                     help=f"run only these ({', '.join(sorted(suite.BENCHMARKS))})")
    run.add_argument("--repeats", type=int, default=3, help="repetitions of each measurement (median taken)")
    run.add_argument("--json", default=str(suite.HERE / "results.json"), help="where results.json goes")
    run.add_argument("--markdown", default=str(suite.HERE / "RESULTS.md"),
                     help="the Markdown file whose generated section is replaced")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = args.only or list(suite.BENCHMARKS)
    document = suite.run(names, quick=args.quick, repeats=args.repeats,
                         echo=lambda line: print(line, file=sys.stderr, flush=True))
    suite.write(document, args.json, args.markdown)
    print(f"wrote {args.json} and {args.markdown}")


if __name__ == "__main__":
    main()
