//! Compiles the C eBPF programs in `capture-bpf/` with clang (BTF, CO-RE),
//! against a `vmlinux.h` dumped by bpftool from the build machine's kernel
//! BTF (CO-RE relocations make the object run on other kernels).
//!
//! Without clang, bpftool or kernel BTF the crate still builds: the eBPF
//! source then fails at run time with the reason recorded here
//! (`cfg(tapwire_no_bpf)` and `TAPWIRE_BPF_MISSING`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tapwire_no_bpf)");
    let src =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("../capture-bpf");
    for f in ["tapwire.bpf.c", "tapwire.h"] {
        println!("cargo::rerun-if-changed={}", src.join(f).display());
    }
    println!("cargo::rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    if let Err(reason) = build(&src, &out) {
        println!("cargo::warning=eBPF programs not built: {reason}");
        println!("cargo::rustc-cfg=tapwire_no_bpf");
        println!("cargo::rustc-env=TAPWIRE_BPF_MISSING={reason}");
    }
}

fn build(src: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let btf = "/sys/kernel/btf/vmlinux";
    if !std::path::Path::new(btf).exists() {
        return Err(format!("{btf} is missing (kernel without BTF)"));
    }
    let dump = Command::new("bpftool")
        .args(["btf", "dump", "file", btf, "format", "c"])
        .output()
        .map_err(|e| format!("bpftool not found ({e}); apt-get install bpftool"))?;
    if !dump.status.success() {
        return Err(format!(
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&dump.stderr).trim()
        ));
    }
    std::fs::write(out.join("vmlinux.h"), &dump.stdout).map_err(|e| e.to_string())?;
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => return Err(format!("no eBPF target arch mapping for {other}")),
        Err(_) => "x86",
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let object = out.join("tapwire.bpf.o");
    let compiled = Command::new(&clang)
        .args(["-g", "-O2", "-target", "bpf", "-Wall"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(out)
        .arg("-I")
        .arg(src)
        .arg("-c")
        .arg(src.join("tapwire.bpf.c"))
        .arg("-o")
        .arg(&object)
        .output()
        .map_err(|e| format!("{clang} not found ({e}); apt-get install clang llvm libbpf-dev"))?;
    if !compiled.status.success() {
        return Err(format!(
            "clang failed: {}",
            String::from_utf8_lossy(&compiled.stderr).trim()
        ));
    }
    Ok(())
}
