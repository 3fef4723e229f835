#!/usr/bin/env python3
"""Writes the generated samples of tests/corpus/: evil tar archives, .deb packages and
deeply nested JSON and TOML.

The text samples beside them are written by hand. Link targets that should reach the test's
canary directory are written as /canary-placeholder/...: the property tests rebuild those
archives with the real canary path (tests/properties/tar_extract.rs). Run from anywhere;
the output is deterministic (fixed times, owners and order).
"""
import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def info(name, kind=tarfile.REGTYPE, link="", data=b"", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mode = mode
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti, data


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


SYM, LNK, DIR, FIFO = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE

TARS = {
    # S2: a link out of the root, then a file through it.
    "symlink-then-file.tar": [
        info("layers/link", SYM, "/canary-placeholder"),
        info("layers/link/file", data=b"pwned"),
    ],
    "relative-symlink-escape.tar": [
        info("up", SYM, "../canary"),
        info("up/dir/secret", data=b"pwned"),
        info("up/new", DIR),
    ],
    "chained-symlinks.tar": [
        info("a", SYM, "b"),
        info("b", SYM, "c"),
        info("c", SYM, "/canary-placeholder/dir"),
        info("a/secret", data=b"pwned"),
    ],
    "symlink-loop.tar": [
        info("loop", SYM, "loop"),
        info("loop/x", data=b"x"),
        info("l1", SYM, "l2/l2/l2/l2"),
        info("l2", SYM, "l1/l1"),
        info("l1/y", data=b"y"),
    ],
    "dotdot-names.tar": [
        info("../escaped", data=b"pwned"),
        info("a/../../escaped", data=b"pwned"),
        info("./../canary/file", data=b"pwned"),
        info("/canary-placeholder/file", data=b"pwned"),
        info("//absolute", data=b"pwned"),
    ],
    "hardlink-escape.tar": [
        info("hard", LNK, "/canary-placeholder/file"),
        info("hard2", LNK, "../canary/file"),
        info("via", SYM, "/canary-placeholder"),
        info("hard3", LNK, "via/file"),
        info("hard3", data=b"overwrite through a hard link"),
    ],
    "dir-then-symlink-replace.tar": [
        info("d", DIR),
        info("d/f", data=b"x"),
        info("d", SYM, "/canary-placeholder"),
        info("d/f", data=b"pwned"),
        info("f", data=b"x"),
        info("f", SYM, "/canary-placeholder/file"),
        info("f", data=b"pwned"),
    ],
    "long-names.tar": [
        info("link", SYM, "/canary-placeholder/" + "d" * 150),
        info("link/" + "n" * 200, data=b"pwned"),
        info("x" * 300, data=b"too long a component"),
        info("/".join(["deep"] * 60) + "/f", data=b"deep"),
    ],
    "fifo-and-devices.tar": [
        info("fifo", FIFO),
        info("fifo", data=b"x"),
        info("dev", tarfile.CHRTYPE),
    ],
    "pax-path-override.tar": None,  # written below
}


def pax_override():
    # A PAX header whose path overrides the ustar name with an escaping one.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti, data = info("innocent", data=b"pwned")
        ti.pax_headers = {"path": "../canary/file", "linkpath": "/"}
        tar.addfile(ti, io.BytesIO(data))
        ti, _ = info("innocent-link", SYM, "x")
        ti.pax_headers = {"linkpath": "/canary-placeholder"}
        tar.addfile(ti)
        ti, data = info("innocent-link/file", data=b"pwned")
        tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def truncated(data):
    return data[: len(data) // 2 + 100]


def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        header = (
            name.encode().ljust(16)
            + b"0".ljust(12)
            + b"0".ljust(6)
            + b"0".ljust(6)
            + b"100644".ljust(8)
            + str(len(data)).encode().ljust(10)
            + b"`\n"
        )
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def deb(data_tar, control=b"Package: evil\nVersion: 1.0\nArchitecture: amd64\n"):
    control_tar = tar_bytes([info("./control", data=control)])
    return ar([("debian-binary", b"2.0\n"), ("control.tar", control_tar), ("data.tar", data_tar)])


def main():
    tar_dir = os.path.join(HERE, "tar")
    deb_dir = os.path.join(HERE, "deb")
    os.makedirs(tar_dir, exist_ok=True)
    os.makedirs(deb_dir, exist_ok=True)
    for sub in ("oci", "toml"):
        os.makedirs(os.path.join(HERE, sub), exist_ok=True)
    tars = {}
    for name, entries in TARS.items():
        tars[name] = pax_override() if entries is None else tar_bytes(entries)
    tars["truncated.tar"] = truncated(tars["symlink-then-file.tar"])
    for name, data in tars.items():
        with open(os.path.join(tar_dir, name), "wb") as f:
            f.write(data)
    debs = {
        "symlink-then-file.deb": deb(tars["symlink-then-file.tar"]),
        "merged-usr-escape.deb": deb(
            tar_bytes([
                info("./bin", SYM, "../../canary"),
                info("./bin/sh", data=b"pwned"),
                info("./usr", SYM, "/canary-placeholder"),
                info("./usr/lib/x", data=b"pwned"),
                info("./lib/../../canary/file", data=b"pwned"),
            ])
        ),
        "hardlink-escape.deb": deb(tars["hardlink-escape.tar"]),
        "huge-control.deb": deb(b"", control=b"Package: x\n" + b" continuation\n" * 5000),
        "bad-control.deb": deb(tars["dotdot-names.tar"], control=b"\xff\xfe not utf-8\n"),
        "truncated.deb": truncated(deb(tars["long-names.tar"])),
        "no-data.deb": ar([("debian-binary", b"2.0\n")]),
        "bad-version.deb": ar([("debian-binary", b"3.0\n"), ("data.tar", b"")]),
        "data-compression.deb": ar([("debian-binary", b"2.0\n"), ("data.tar.gz", b"not gzip"),
                                    ("data.tar.xz", b"not xz"), ("data.tar.zst", b"not zstd"),
                                    ("data.tar.bz2", b"?")]),
    }
    for name, data in debs.items():
        with open(os.path.join(deb_dir, name), "wb") as f:
            f.write(data)
    deep = {
        "oci/deep-array.json": b"[" * 100000,
        "oci/deep-object.json": b'{"manifests":' * 20000 + b"1" + b"}" * 20000,
        "toml/deep-array.toml": b"a = " + b"[" * 50000 + b"]" * 50000 + b"\n",
        "toml/deep-inline-table.toml": b"a = " + b"{ b = " * 20000 + b"1" + b" }" * 20000 + b"\n",
        "toml/deep-dotted-key.toml": b".".join([b"k"] * 20000) + b" = 1\n",
        "toml/deep-table-header.toml": b"[" + b".".join([b"t"] * 20000) + b"]\nx = 1\n",
        "toml/deep-array-of-tables.toml": b"[[" + b".".join([b"processes"] * 5000) + b"]]\n",
    }
    for name, data in deep.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
