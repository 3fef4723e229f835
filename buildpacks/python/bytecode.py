# kiln/python's bytecode compiler: writes hash-based .pyc files (PEP 552) for a tree of
# sources into a PYTHONPYCACHEPREFIX-style tree, reproducibly and incrementally.
#
# Usage: python3 bytecode.py PREFIX MODE ROOT
#   PREFIX  the directory the image sets as PYTHONPYCACHEPREFIX
#   MODE    unchecked-hash (sources that never change under the .pyc) or checked-hash
#           (sources another layer owns, such as the run image's standard library)
#   ROOT    a directory whose *.py files are compiled. Each of its top-level entries (a
#           "unit": a package, a module) is compiled in a process of its own, forked from
#           this one before it compiled anything, so a file's bytes never depend on what else
#           was compiled (marshal's reference flags follow the interpreter's history) or on
#           the order of the work.
#
# Incremental: a unit whose .pyc files all exist, match their sources' hashes and mode, and
# are all there is under the unit's prefix directory is kept; any other unit is removed and
# compiled afresh — exactly what a clean run writes for it. Prefix entries of units that are
# gone from ROOT are removed.
#
# Prints "compiled N skipped M kept K" (M: files that are not valid Python for this
# interpreter, such as templates and Python 2 leftovers; they stay uncompiled; K: files of
# units kept as they were).
import importlib.util
import os
import py_compile
import shutil
import sys

# Never compiled: the standard library's own tests and demos, and trees another root covers.
SKIP_DIRS = {"__pycache__", "test", "tests", "idlelib", "turtledemo", "site-packages", "dist-packages"}
TAG = sys.implementation.cache_tag


def sources(top, links):
    """Every .py file under top, sorted; symlinked files only when links (the sources of
    checked-hash files may live anywhere: Python checks them on import). Directory links
    are never followed."""

    def wanted(path):
        return path.endswith(".py") and (links or not os.path.islink(path)) and os.path.isfile(path)

    if not os.path.isdir(top) or os.path.islink(top):
        return [top] if wanted(top) else []
    found = []
    for directory, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(directory, name)
            if wanted(path):
                found.append(path)
    return found


def unit_output(top):
    """Where the unit's files go under the prefix: a directory, or one .pyc."""
    if os.path.isdir(top) and not os.path.islink(top):
        return sys.pycache_prefix + os.path.abspath(top)
    return importlib.util.cache_from_source(top)


def up_to_date(files, flags):
    """Whether every file's .pyc exists with these flags and its source's hash, and nothing
    else is under the unit's output."""
    expected = set()
    for path in files:
        cfile = importlib.util.cache_from_source(path)
        expected.add(cfile)
        try:
            with open(cfile, "rb") as pyc:
                header = pyc.read(16)
            with open(path, "rb") as source:
                digest = importlib.util.source_hash(source.read())
        except OSError:
            return False
        if int.from_bytes(header[4:8], "little") != flags or header[8:16] != digest:
            return False
    return expected


def compile_unit(top, mode, flags, out):
    files = sources(top, mode == py_compile.PycInvalidationMode.CHECKED_HASH)
    output = unit_output(top)
    expected = up_to_date(files, flags)
    if expected is not False:
        present = set()
        if os.path.isdir(output):
            for directory, _, names in os.walk(output):
                present.update(os.path.join(directory, n) for n in names)
        elif os.path.exists(output):
            present.add(output)
        if present == expected:
            os.write(out, b"0 0 %d\n" % len(files))
            return
    if os.path.isdir(output) and not os.path.islink(output):
        shutil.rmtree(output)
    elif os.path.lexists(output):
        os.unlink(output)
    compiled = skipped = 0
    for path in files:
        try:
            py_compile.compile(
                path,
                cfile=importlib.util.cache_from_source(path),
                dfile=path,
                doraise=True,
                invalidation_mode=mode,
            )
            compiled += 1
        except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeError, OSError):
            skipped += 1
    os.write(out, b"%d %d 0\n" % (compiled, skipped))


def remove_gone(root, units):
    """Removes prefix entries of units no longer in root."""
    directory = sys.pycache_prefix + os.path.abspath(root)
    if not os.path.isdir(directory):
        return
    wanted = {os.path.basename(unit_output(u)) for u in units}
    for name in sorted(os.listdir(directory)):
        if name not in wanted:
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def main():
    prefix, mode_name, root = sys.argv[1], sys.argv[2], sys.argv[3]
    mode, flags = {
        "unchecked-hash": (py_compile.PycInvalidationMode.UNCHECKED_HASH, 1),
        "checked-hash": (py_compile.PycInvalidationMode.CHECKED_HASH, 3),
    }[mode_name]
    sys.pycache_prefix = os.path.abspath(prefix)
    units = []
    if os.path.isdir(root):
        units = [os.path.join(root, e) for e in sorted(os.listdir(root)) if e not in SKIP_DIRS]
    remove_gone(root, units)
    read, write = os.pipe()
    parallel = max(1, min(len(os.sched_getaffinity(0)), 8))
    running = failed = 0

    def reap():
        nonlocal failed
        _, status = os.wait()
        failed += status != 0

    for unit in units:
        if running == parallel:
            reap()
            running -= 1
        if os.fork() == 0:
            os.close(read)
            status = 1
            try:
                compile_unit(unit, mode, flags, write)
                status = 0
            finally:
                os._exit(status)
        running += 1
    while running:
        reap()
        running -= 1
    os.close(write)
    totals = [0, 0, 0]
    with os.fdopen(read) as results:
        for line in results:
            for i, n in enumerate(line.split()):
                totals[i] += int(n)
    print("compiled %d skipped %d kept %d" % tuple(totals))
    if failed:
        sys.exit("%d of %d compiler processes failed" % (failed, len(units)))


main()
