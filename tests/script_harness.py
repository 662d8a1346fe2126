"""tests/script_harness.py: what the end-to-end test scripts (test_tools.py, test_convert.py) share:
a registry of test functions, running a command, and the main loop that runs every test (or those
named with --only) in a scratch folder, prints one line per test and "N passed, M failed", and
exits non-zero on any failure."""
import subprocess
import tempfile
import traceback

TESTS = []


def test(function):
    TESTS.append(function)
    return function


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)


def main(script_globals, parser, prefix):
    """Parses the arguments into the script's ARGS, makes its WORK folder, runs its tests."""
    parser.add_argument("--only", nargs="+", help="run only the tests of these names")
    args = parser.parse_args()
    script_globals["ARGS"] = args
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        script_globals["WORK"] = work
        for function in TESTS:
            if args.only and function.__name__ not in args.only:
                continue
            try:
                function()
                passed += 1
                print(f"ok   {function.__name__}", flush=True)
            except Exception:  # report every failure, then go on
                failed += 1
                print(f"FAIL {function.__name__}\n{traceback.format_exc()}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
