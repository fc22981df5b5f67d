//! `rlcpc eval` and resuming from checkpoints that are corrupt, missing or of another net.

use crate::support::{bad_setting_is_named, s, Rlcpc};
use crate::train::{resume, tiny_train};

#[test]
fn corrupt_or_missing_checkpoints_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let e = Rlcpc::new("eval").args(&["--checkpoint", s(&bad)]).fails();
    assert!(
        e.contains("corrupt") && e.contains("bad.safetensors"),
        "{e}"
    );
    let none = tmp.path().join("none.safetensors");
    let e = Rlcpc::new("eval").args(&["--checkpoint", s(&none)]).fails();
    assert!(e.contains("none.safetensors"), "{e}");
    let e = Rlcpc::new("train --resume").out(tmp.path()).fails();
    assert!(e.contains("config.toml"), "{e}");
    // A checkpoint of another network is refused on resume.
    let run = tmp.path().join("run");
    tiny_train(&run).ok();
    bad_setting_is_named(&resume(&run), "model.mlp_hidden=[32]", &["does not match"]);
    // Review 3, N11: 4 KiB of zeros in the middle of the weights loaded without a word.
    let ck = run.join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    let data = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(
        bytes.len() - data > 3 * 4096,
        "a checkpoint of {} bytes",
        bytes.len()
    );
    let mid = (data + bytes.len()) / 2;
    bytes[mid..mid + 4096].fill(0);
    std::fs::write(&ck, &bytes).unwrap();
    for cmd in [
        Rlcpc::new("eval").args(&["--checkpoint", s(&ck)]),
        resume(&run),
    ] {
        let e = cmd.fails();
        assert!(
            e.contains("does not match its checksum") && e.contains("checkpoint.safetensors"),
            "{e}"
        );
    }
}
