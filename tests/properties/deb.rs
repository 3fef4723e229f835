//! kiln's Debian package unpacker (`kiln::internals::stack::deb::Unpacker::unpack`): a `.deb` with a
//! hostile `data.tar` or `control.tar`, or arbitrary bytes, never writes outside the root
//! and never panics.

use kiln::internals::stack::deb::Unpacker;
use proptest::prelude::*;

use crate::support::{Canary, config, corpus};
use crate::tar_extract::{Entry, Kind, archive, tar_bytes, with_canary};

/// A `.deb`: `debian-binary`, `control.tar` holding `control`, `data.tar`.
pub fn deb_bytes(control: &[u8], data_tar: &[u8]) -> Vec<u8> {
    let control_tar = tar_bytes(&[Entry {
        data: control.to_vec(),
        ..Entry::new(Kind::File, b"./control", b"")
    }]);
    let mut builder = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar", &control_tar[..]),
        ("data.tar", data_tar),
    ] {
        builder
            .append(
                &ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64),
                bytes,
            )
            .unwrap();
    }
    builder.into_inner().unwrap()
}

const CONTROL: &[u8] = b"Package: evil\nVersion: 1.0\nArchitecture: amd64\n";

fn unpack(canary: &Canary, deb: &[u8]) {
    let mut unpacker = Unpacker::new(&canary.root()).unwrap();
    let _ = unpacker.unpack(deb, "evil");
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn unpack_random_data_tar_stays_beneath_root(entries in archive()) {
        let canary = Canary::new();
        let data = tar_bytes(&with_canary(&entries, &canary.canary()));
        unpack(&canary, &deb_bytes(CONTROL, &data));
        canary.assert_untouched(&entries);
    }

    #[test]
    fn unpack_mangled_deb_never_panics_or_escapes(
        entries in archive(),
        control in proptest::collection::vec(any::<u8>(), 0..200),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let canary = Canary::new();
        let data = tar_bytes(&with_canary(&entries, &canary.canary()));
        let mut deb = deb_bytes(&control, &data);
        for (at, byte) in flips {
            let i = at.index(deb.len());
            deb[i] = byte;
        }
        unpack(&canary, &deb);
        canary.assert_untouched(&entries);
    }
}

proptest! {
    #![proptest_config(config(2))]

    #[test]
    fn unpack_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let canary = Canary::new();
        unpack(&canary, &bytes);
        let mut with_magic = b"!<arch>\n".to_vec();
        with_magic.extend(&bytes);
        unpack(&canary, &with_magic);
        canary.assert_untouched(&bytes.len());
    }
}

/// The committed packages (`tests/corpus/deb/`, made by `tests/corpus/make-corpus.py`).
#[test]
fn corpus_packages_never_escape_or_panic() {
    for (name, bytes) in corpus("deb") {
        let canary = Canary::new();
        unpack(&canary, &bytes);
        canary.assert_untouched(&name);
    }
}
