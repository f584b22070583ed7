#!/usr/bin/env python3
"""Writes glassbox-guest.json: the addresses an introspection tool needs in the guest kernel.

Usage: gen_json.py [--nm NM] --layout layout.h guest.elf out.json
Symbols come from `nm`; struct layouts from the #defines of layout.h (the C code static-asserts
that they match)."""
import argparse
import json
import re
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--layout", required=True)
    ap.add_argument("elf")
    ap.add_argument("out")
    args = ap.parse_args()

    syms = {}
    sizes = {}
    out = subprocess.run([args.nm or "nm", "-S", args.elf], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = int(parts[0], 16)
            sizes[parts[3]] = int(parts[1], 16)
        elif len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)

    defs = {}
    expr = re.compile(r"#define\s+([A-Z0-9_]+)\s+(.+?)\s*(/\*.*)?$")
    for line in open(args.layout):
        m = expr.match(line.strip())
        if not m:
            continue
        value = re.sub(r"(\d)UL\b", r"\1", m.group(2))
        try:
            defs[m.group(1)] = int(eval(value, {}, dict(defs)))
        except Exception:
            pass

    def addr(name):
        return hex(syms[name])

    procs = syms["glassbox_procs"]
    size = defs["PROC_SIZE"]
    max_procs = defs["MAX_PROCS"]
    doc = {
        "format": "glassbox-guest/1",
        "entry": addr("_start"),
        "kernel_text": {"start": addr("__kernel_text_start"), "end": addr("__kernel_text_end")},
        "syscall_table": {
            "address": addr("glassbox_syscall_table"),
            "entries": defs["NR_SYSCALLS"],
            "entry_size": 8,
            "names": ["write", "yield", "exit", "getpid", "hypercall", "poke", "peek"],
        },
        "syscall_entry": addr("syscall_entry"),
        "int3_entry": addr("int3_entry"),
        "idt": addr("idt") if "idt" in syms else None,
        "gdt": addr("gdt") if "gdt" in syms else None,
        "cpus": {"address": addr("cpus"), "count": defs["MAX_CPUS"]},
        "process_count": {"address": addr("glassbox_nprocs"), "size": 4},
        "process_list": {
            "address": hex(procs),
            "max": max_procs,
            "stride": size,
            "fields": {
                "pid": {"offset": defs["PROC_PID"], "size": 4},
                "state": {"offset": defs["PROC_STATE"], "size": 4,
                          "values": {"0": "unused", "1": "runnable", "2": "exited",
                                     "3": "killed"}},
                "cpu": {"offset": defs["PROC_CPU"], "size": 4},
                "kind": {"offset": defs["PROC_KIND"], "size": 4,
                         "values": {"0": "worker", "1": "agent", "2": "attacker", "3": "faulter"}},
                "cr3": {"offset": defs["PROC_CR3"], "size": 8},
                "counter": {"offset": defs["PROC_COUNTER"], "size": 8},
                "syscalls": {"offset": defs["PROC_SYSCALLS"], "size": 8},
                "switches": {"offset": defs["PROC_SWITCHES"], "size": 8},
                "name": {"offset": defs["PROC_NAME"], "size": 16},
            },
            "cr3_addresses": [hex(procs + i * size + defs["PROC_CR3"]) for i in range(max_procs)],
        },
        "user": {
            "code_va": hex(defs["USER_CODE_VA"]),
            "shared_va": hex(defs["USER_SHARED_VA"]),
            "counter_va": hex(defs["USER_DATA_VA"]),
            "code_phys": addr("__user_phys"),
        },
        "user_shared": addr("user_shared"),
        "attack_text_target": addr("attack_text_target"),
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
