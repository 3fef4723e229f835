# kiln/python's bytecode compiler: writes hash-based .pyc files (PEP 552) for trees of
# sources into a PYTHONPYCACHEPREFIX-style tree, reproducibly.
#
# Usage: python3 bytecode.py PREFIX MODE ROOT [ROOT...]
#   PREFIX  the directory the image sets as PYTHONPYCACHEPREFIX
#   MODE    unchecked-hash (sources that never change under the .pyc) or checked-hash
#           (sources another layer owns, such as the run image's standard library)
#   ROOT    a directory whose *.py files are compiled; each of its top-level entries is
#           compiled in a process of its own, forked from this one before it compiled
#           anything, so a file's bytes never depend on what else was compiled (marshal's
#           reference flags follow the interpreter's history) or on the order of the work.
#
# Prints "compiled N skipped M" (M: files that are not valid Python for this interpreter,
# such as templates and Python 2 leftovers; they are left to fail at import as before).
import os
import sys
import importlib.util
import py_compile

# Never compiled: the standard library's own tests and demos, and trees another root covers.
SKIP_DIRS = {"__pycache__", "test", "tests", "idlelib", "turtledemo", "site-packages", "dist-packages"}


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


def compile_unit(top, mode, out):
    compiled = skipped = 0
    links = mode == py_compile.PycInvalidationMode.CHECKED_HASH
    for path in sources(top, links):
        cfile = importlib.util.cache_from_source(path)
        try:
            py_compile.compile(path, cfile=cfile, dfile=path, doraise=True, invalidation_mode=mode)
            compiled += 1
        except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeError, OSError):
            skipped += 1
    os.write(out, b"%d %d\n" % (compiled, skipped))


def main():
    prefix, mode_name, roots = sys.argv[1], sys.argv[2], sys.argv[3:]
    mode = {
        "unchecked-hash": py_compile.PycInvalidationMode.UNCHECKED_HASH,
        "checked-hash": py_compile.PycInvalidationMode.CHECKED_HASH,
    }[mode_name]
    sys.pycache_prefix = os.path.abspath(prefix)
    units = []
    for root in roots:
        if os.path.isdir(root):
            units += [os.path.join(root, e) for e in sorted(os.listdir(root)) if e not in SKIP_DIRS]
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
                compile_unit(unit, mode, write)
                status = 0
            finally:
                os._exit(status)
        running += 1
    while running:
        reap()
        running -= 1
    os.close(write)
    compiled = skipped = 0
    with os.fdopen(read) as results:
        for line in results:
            c, s = line.split()
            compiled += int(c)
            skipped += int(s)
    print("compiled %d skipped %d" % (compiled, skipped))
    if failed:
        sys.exit("%d of %d compiler processes failed" % (failed, len(units)))


main()
