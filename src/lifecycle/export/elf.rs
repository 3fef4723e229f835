//! Reading what an ELF file needs from the dynamic loader, with bounded reads.
//!
//! Only the parts the loader itself reads are read: the ELF header, the program headers,
//! `PT_INTERP`, `PT_DYNAMIC`, and the few strings of the dynamic string table that
//! `DT_NEEDED`, `DT_RUNPATH`, `DT_RPATH` and `DT_SONAME` name — a few kilobytes whatever
//! the file's size (a 1 GB machine-learning library costs what `libz.so` costs). goblin
//! parses the structures; kiln reads the bytes at their offsets itself.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

use goblin::container::{Container, Ctx};
use goblin::elf::dynamic::{
    DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB, Dynamic,
};
use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP, PT_LOAD, ProgramHeader};

/// The most program headers read (real files have about a dozen).
const MAX_PROGRAM_HEADERS: usize = 256;
/// The largest `PT_DYNAMIC` segment read (real ones are a few hundred bytes).
const MAX_DYNAMIC_BYTES: u64 = 256 * 1024;
/// The longest interpreter path, soname or run path read.
const MAX_STRING_BYTES: u64 = 4096;

/// What an ELF file asks of the dynamic loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ElfNeeds {
    /// `e_machine` (`EM_X86_64`, `EM_AARCH64`, …).
    pub machine: u16,
    /// Whether it is a 64-bit file.
    pub is_64: bool,
    /// `PT_INTERP`: the dynamic loader an executable names.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` directories (searched before `LD_LIBRARY_PATH`).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` directories (searched after it).
    pub runpath: Vec<String>,
    /// `DT_SONAME`.
    pub soname: Option<String>,
}

/// Reads what `file` needs, or `None` when it is not an ELF file or is malformed (a file
/// the loader would refuse is not kiln's to judge here). Only I/O errors are errors.
pub(crate) fn read_needs(file: &File) -> io::Result<Option<ElfNeeds>> {
    let mut ident = [0u8; 64];
    let n = read_at_most(file, &mut ident, 0)?;
    if n < 52 || !ident.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let Ok(header) = goblin::elf::Elf::parse_header(&ident[..n]) else {
        return Ok(None);
    };
    let (Ok(container), Ok(endian)) = (header.container(), header.endianness()) else {
        return Ok(None);
    };
    let ctx = Ctx::new(container, endian);
    let count = usize::from(header.e_phnum);
    let entry = usize::from(header.e_phentsize);
    let expected = ProgramHeader::size(ctx);
    if count == 0 || count > MAX_PROGRAM_HEADERS || entry != expected {
        return Ok(Some(ElfNeeds {
            machine: header.e_machine,
            is_64: container == Container::Big,
            ..ElfNeeds::default()
        }));
    }
    let mut table = vec![0u8; count * entry];
    if read_at_most(file, &mut table, header.e_phoff)? < table.len() {
        return Ok(None);
    }
    let Ok(headers) = ProgramHeader::parse(&table, 0, count, ctx) else {
        return Ok(None);
    };
    let mut needs = ElfNeeds {
        machine: header.e_machine,
        is_64: container == Container::Big,
        ..ElfNeeds::default()
    };
    if let Some(interp) = headers.iter().find(|h| h.p_type == PT_INTERP) {
        needs.interpreter = read_string(file, interp.p_offset, interp.p_filesz)?;
    }
    let Some(dynamic) = headers.iter().find(|h| h.p_type == PT_DYNAMIC) else {
        return Ok(Some(needs));
    };
    if dynamic.p_filesz == 0 || dynamic.p_filesz > MAX_DYNAMIC_BYTES {
        return Ok(Some(needs));
    }
    let mut bytes = vec![0u8; usize::try_from(dynamic.p_filesz).unwrap_or(0)];
    if read_at_most(file, &mut bytes, dynamic.p_offset)? < bytes.len() {
        return Ok(Some(needs));
    }
    // goblin reads the segment at its file offset: hand it the segment alone, at 0.
    let mut at_zero = dynamic.clone();
    at_zero.p_offset = 0;
    let Ok(Some(parsed)) = Dynamic::parse(&bytes, &[at_zero], ctx) else {
        return Ok(Some(needs));
    };
    // The string table is named by its address; the loadable segment holding it says where
    // that is in the file. (goblin's `info` would map it with the program headers it was
    // given, which here are the dynamic segment's alone: read the raw entries.)
    let value = |tag| parsed.dyns.iter().find(|d| d.d_tag == tag).map(|d| d.d_val);
    let (Some(strtab), Some(strsz)) = (value(DT_STRTAB), value(DT_STRSZ)) else {
        return Ok(Some(needs));
    };
    let Some(strtab_offset) = headers
        .iter()
        .filter(|h| h.p_type == PT_LOAD)
        .find(|h| h.p_vaddr <= strtab && strtab < h.p_vaddr.saturating_add(h.p_filesz))
        .map(|h| strtab - h.p_vaddr + h.p_offset)
    else {
        return Ok(Some(needs));
    };
    for d in &parsed.dyns {
        if !matches!(d.d_tag, DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME) || d.d_val >= strsz {
            continue;
        }
        let Some(value) =
            read_string(file, strtab_offset.saturating_add(d.d_val), strsz - d.d_val)?
        else {
            continue;
        };
        match d.d_tag {
            DT_NEEDED => needs.needed.push(value),
            DT_RPATH => needs.rpath.extend(split_path(&value)),
            DT_RUNPATH => needs.runpath.extend(split_path(&value)),
            _ => needs.soname = Some(value),
        }
    }
    Ok(Some(needs))
}

/// The directories of a run path (`a:b`, empty entries dropped).
fn split_path(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the count.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset.saturating_add(done as u64)) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A NUL-terminated string at `offset`, at most `limit` (and [`MAX_STRING_BYTES`]) long;
/// `None` when it is empty, unterminated or not UTF-8.
fn read_string(file: &File, offset: u64, limit: u64) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; usize::try_from(limit.min(MAX_STRING_BYTES)).unwrap_or(0)];
    let n = read_at_most(file, &mut buf, offset)?;
    let bytes = &buf[..n];
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    if end == 0 {
        return Ok(None);
    }
    Ok(std::str::from_utf8(&bytes[..end]).ok().map(str::to_string))
}

/// The ELF machine (`e_machine`) and class of an OCI architecture, and the Debian
/// multiarch triplet of its library directories.
pub(crate) fn machine_of(architecture: &str) -> Option<(u16, bool, &'static str)> {
    use goblin::elf::header::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64};
    Some(match architecture {
        "amd64" => (EM_X86_64, true, "x86_64-linux-gnu"),
        "arm64" => (EM_AARCH64, true, "aarch64-linux-gnu"),
        "arm" => (EM_ARM, false, "arm-linux-gnueabihf"),
        "386" => (EM_386, false, "i386-linux-gnu"),
        "ppc64le" => (EM_PPC64, true, "powerpc64le-linux-gnu"),
        "s390x" => (EM_S390, true, "s390x-linux-gnu"),
        "riscv64" => (EM_RISCV, true, "riscv64-linux-gnu"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(path: &str) -> Option<ElfNeeds> {
        read_needs(&File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn non_elf_files_are_none() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [
            ("empty", &b""[..]),
            (
                "text",
                b"#!/bin/sh\necho hello, this is not an ELF file at all\n",
            ),
            (
                "truncated",
                b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            assert_eq!(needs(path.to_str().unwrap()), None, "{name}");
        }
        // A header whose program headers lie past the end of the file.
        let mut header = std::fs::read("/proc/self/exe").unwrap();
        header.truncate(64);
        let path = dir.path().join("header-only");
        std::fs::write(&path, &header).unwrap();
        let found = needs(path.to_str().unwrap());
        assert!(
            found.as_ref().is_none_or(|n| n.needed.is_empty()),
            "{found:?}"
        );
    }

    #[test]
    fn this_test_binary_needs_libc() {
        let me = needs("/proc/self/exe").unwrap();
        let (machine, is_64, _) =
            machine_of(&crate::image::TargetPlatform::host().architecture).unwrap();
        assert_eq!((me.machine, me.is_64), (machine, is_64));
        assert!(me.needed.iter().any(|n| n == "libc.so.6"), "{me:?}");
        assert!(
            me.interpreter
                .as_deref()
                .is_some_and(|i| i.contains("ld-linux")),
            "{me:?}"
        );
    }
}
