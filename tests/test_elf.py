"""ELF object loading (bpfjit.elf): every committed clang-built fixture (tests/elf/*.c -> *.o) parsed into
specs, loaded into a Runtime and run in both engines with the results checked; objects clang does not emit
(RELA, e_machine 0, no function symbols, helpers and externs) built by tests/elf/elfgen.py."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bpfjit import VM, ELFError, LoadError, ObjectFile, RuntimeFault, isa
from bpfjit.elf import prog_type_of
from bpfjit.progtypes import pt_regs
from bpfjit.runtime import Runtime

FIX = Path(__file__).resolve().parent / "elf"
sys.path.insert(0, str(FIX))
import elfgen  # noqa: E402
from elfgen import (R_BPF_64_32, SHF_ALLOC, SHF_WRITE, SHT_NOBITS, STT_OBJECT, STT_SECTION, Obj, Rel, Sec,  # noqa: E402
                    Sym)

I = isa.Insn


def load(name, runtime=None, **kw):
    obj = ObjectFile.open(FIX / name)
    return obj, obj.load(runtime=runtime, **kw)


# ------------------------------------------------------------------------------------ specs
def test_specs_of_libbpf_kprobe_object():
    obj = ObjectFile.open(FIX / "kprobe_btf.o")
    assert list(obj.programs) == ["handle_open", "handle_ret"]
    spec = obj.programs["handle_open"]
    assert (spec.name, spec.section, spec.prog_type, spec.license, spec.kern_version) == \
        ("handle_open", "kprobe/do_sys_open", "kprobe", "GPL", None)
    assert len(spec) == len(spec.insns) == 23
    assert obj.programs["kretprobe/do_sys_open"] is obj.programs["handle_ret"]      # by section name
    assert obj.programs["handle_ret"].prog_type == "kprobe"
    m = obj.maps["counts"]
    assert (m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.inner, m.pinning) == \
        ("hash", 4, 8, 1024, 0, None, 0)
    assert spec.maps == ["counts"]


def test_open_bytes_equals_open_path():
    data = (FIX / "calls.o").read_bytes()
    a, b = ObjectFile.open(data), ObjectFile.open(FIX / "calls.o")
    assert {n: p.code for n, p in a.programs.items()} == {n: p.code for n, p in b.programs.items()}


@pytest.mark.parametrize("section,ptype", [
    ("kprobe/do_sys_open", "kprobe"), ("kretprobe/x", "kprobe"), ("uprobe/lib:f", "kprobe"),
    ("tracepoint/syscalls/sys_enter_open", "tracepoint"), ("tp/sched/sched_switch", "tracepoint"),
    ("raw_tracepoint/sys_enter", "raw_tracepoint"), ("raw_tp/x", "raw_tracepoint"), ("perf_event", "perf_event"),
    ("socket", "socket_filter"), ("socket1", "socket_filter"), ("xdp", "xdp"), ("xdp_prog", "xdp"),
    ("tc", "sched_cls"), ("tc/ingress", "sched_cls"), ("classifier", "sched_cls"), ("action", "sched_act"),
    ("cgroup/skb", "cgroup_skb"), ("cgroup_skb/ingress", "cgroup_skb"), ("cgroup/connect4", "cgroup_sock_addr"),
    ("fentry/do_exit", "tracing"), ("lsm/file_open", "lsm"), ("sk_skb/stream_parser", "sk_skb"),
    ("license", None), (".text", None), ("tcp", None), ("mysection", None)])
def test_section_names_map_to_libbpf_types(section, ptype):
    assert prog_type_of(section) == ptype


# ------------------------------------------------------------------------------------ running fixtures
def test_kprobe_btf_hash_map_counting(engine):
    obj, loaded = load("kprobe_btf.o")
    rt = loaded.runtime
    prog = loaded.programs["handle_open"]
    assert (prog.name, prog.prog_type, prog.license, prog.kern_version) == \
        ("handle_open", "kprobe", "GPL", rt.kern_version)
    probe = rt.kprobe(prog, engine)
    assert [probe.fire(pt_regs(di=3)) for _ in range(3)] == [1, 2, 2]
    assert probe.fire(pt_regs(di=9)) == 1
    counts = loaded.maps["counts"]
    assert counts is rt.map("counts")
    assert dict(counts.items()) == {3: 3, 9: 1}
    assert rt.kprobe(loaded.programs["handle_ret"], engine).fire(pt_regs(ax=41)) == 42


def test_global_data_sections(engine):
    obj, loaded = load("globals.o")
    assert set(obj.maps) == {".data", ".rodata", ".bss"}
    assert obj.maps[".rodata"].data[:16] == (3).to_bytes(8, "little") + b"hi there"
    assert obj.maps[".bss"].data is None and obj.maps[".bss"].value_size == 36
    rt = loaded.runtime
    acc = VM(loaded.programs["accumulate"], engine, runtime=rt)
    assert acc.run(pt_regs(di=5), readonly=True) == ord("i")
    assert acc.run(pt_regs(di=7), readonly=True) == ord("i")
    data = loaded.maps[".data"].values[0].view(np.uint64)
    bss = loaded.maps[".bss"].values[0]
    assert data[0] == 100 + 5 * 3 + 7 * 3
    assert list(bss[:32].view(np.uint64)) == [5, 7, 0, 0] and bss[32:36].view(np.uint32)[0] == 2
    assert VM(loaded.programs["read_total"], engine, runtime=rt).run(pt_regs(), readonly=True) == 136
    assert loaded.maps[".rodata"].frozen


def test_trace_printk_format_in_rodata(engine):
    _, loaded = load("globals.o", programs=["say_hi"])
    loaded.runtime.trace_lines()
    assert loaded.runtime.kprobe(loaded.programs["say_hi"], engine).fire(pt_regs(di=7)) == 0
    assert [line.split("bpf_trace_printk: ")[1] for line in loaded.runtime.trace_lines()] == ["hi 7"]


def test_map_in_map_parsed(engine):
    obj = ObjectFile.open(FIX / "map_in_map.o")
    outer = obj.maps["outer"]
    assert (outer.type, outer.key_size, outer.value_size, outer.max_entries) == ("array_of_maps", 4, 4, 2)
    assert (outer.inner.type, outer.inner.key_size, outer.inner.value_size, outer.inner.max_entries) == \
        ("array", 4, 4, 4)
    assert outer.values == {0: "inner_b", 1: "inner_a"}
    loaded = obj.load(programs=["use_inner_a"])     # loads and runs in tests/test_map_in_map.py
    assert loaded.runtime.kprobe(loaded.programs["use_inner_a"], engine).fire(pt_regs()) == 4
    assert loaded.maps["inner_a"][1] == 3


EVENT = np.dtype([("pid", "<u4"), ("fd", "<u4"), ("count", "<u8"), ("comm", "S16")])


def test_libbpf_bootstrap_ringbuf_kprobe(engine):
    import os
    obj = ObjectFile.open(FIX / "ringbuf_bootstrap.o")
    assert obj.programs["handle_exec"].prog_type == "tracepoint"
    with pytest.raises(LoadError, match="'handle_exec'.*'tracepoint'"):
        obj.load()
    assert obj.maps["rb"].type == "ringbuf" and obj.maps["rb"].max_entries == 4096
    loaded = obj.load(programs=["trace_write"])
    probe = loaded.runtime.kprobe(loaded.programs["trace_write"], engine)
    assert probe.fire(pt_regs(di=3, dx=5)) == 0                 # below min_count (.rodata)
    assert probe.fire(pt_regs(di=3, dx=50)) == 1
    [rec] = [np.frombuffer(r, EVENT)[0] for r in loaded.maps["rb"].drain()]
    assert (int(rec["pid"]), int(rec["fd"]), int(rec["count"])) == (os.getpid(), 3, 50)
    assert rec["comm"] and len(rec["comm"]) <= 15
    fired = [probe.fire(pt_regs(di=1, dx=99)) for _ in range(150)]   # the 4 KiB ring fills: `dropped` counts
    dropped = int(loaded.maps[".bss"].values[0].view(np.uint64)[0])
    assert fired.count(0) == dropped > 0 and len(loaded.maps["rb"].drain()) == fired.count(1)


def test_cpu_v4_object(engine):
    """calls.c built with -mcpu=v4: the same results."""
    loaded = ObjectFile.open(FIX / "calls_v4.o").load()
    rt = loaded.runtime
    assert rt.kprobe(loaded.programs["prog_a"], engine).fire(pt_regs(di=4)) == 40
    assert rt.kprobe(loaded.programs["prog_b"], engine).fire(pt_regs(si=4)) == 38


def _rodata_store_object(store: bool) -> bytes:
    """A program reading .rodata[8] (and storing into .rodata[0] when `store`)."""
    o = Obj()
    o.sections.append(Sec(".rodata", (7).to_bytes(8, "little") + (11).to_bytes(8, "little")))
    o.symbols.append(Sym(".rodata", ".rodata", 0, 0, STT_SECTION, 0))
    body = [I(0x18, 1, 0, 0, 8), I(0, 0, 0, 0, 0), I(0x79, 0, 1, 0, 0)]        # lddw r1, .rodata+8; r0 = [r1]
    if store:
        body += [I(0x7A, 1, 0, -8, 1)]                                           # stdw [r1-8], 1
    o.code("xdp", body + [I(0x95, 0, 0, 0, 0)])
    o.symbols.append(Sym("ro", "xdp", 0, 8 * (len(body) + 1)))
    o.relocs.append(Rel("xdp", 0, ".rodata"))
    o.sections.append(Sec("license", b"GPL\0", flags=SHF_ALLOC | SHF_WRITE))
    return o.build()


def test_rodata_is_read_only_for_programs(engine):
    obj = ObjectFile.open(_rodata_store_object(False), prog_types={"ro": "raw"})
    assert obj.maps[".rodata"].flags & 0x80                   # BPF_F_RDONLY_PROG
    loaded = obj.load()
    assert VM(loaded.programs["ro"], engine, runtime=loaded.runtime).run(b"") == 11
    loaded = ObjectFile.open(_rodata_store_object(True), prog_types={"xdp": "raw"}).load()
    with pytest.raises(RuntimeFault) as e:
        VM(loaded.programs["ro"], engine, runtime=loaded.runtime).run(b"")
    assert e.value.kind == "store" and e.value.pc == 3


def test_bpf_to_bpf_calls(engine):
    obj, loaded = load("calls.o")
    assert obj.programs["prog_a"].subprograms == ["sum_squares", "square", "add3"]
    assert obj.programs["prog_b"].subprograms == ["add3", "square"]
    rt = loaded.runtime
    a = rt.kprobe(loaded.programs["prog_a"], engine)
    b = rt.kprobe(loaded.programs["prog_b"], engine)
    assert a.fire(pt_regs(di=4)) == 1 + 4 + 9 + 16 + (1 + 2 + 3 + 4)
    assert a.fire(pt_regs(di=0)) == 10
    assert b.fire(pt_regs(si=4)) == 4 + 10 + 20 + 4
    assert obj.programs["prog_c"].subprograms == ["record", "square"]
    assert obj.programs["prog_c"].maps == ["sums", ".bss"]       # relocations of the subprogram
    c = rt.kprobe(loaded.programs["prog_c"], engine)
    assert c.fire(pt_regs(di=3)) == 9 and c.fire(pt_regs(di=2)) == 13
    assert [int(loaded.maps["sums"][i]) for i in (0, 1)] == [13, 5]
    assert loaded.maps[".bss"].values[0].view(np.uint64)[0] == 4


def test_tail_calls_through_prog_array_values(engine):
    obj, loaded = load("tailcall.o")
    assert obj.maps["jump_table"].values == {1: "step_one", 3: "step_two"}
    table = loaded.maps["jump_table"]
    assert table[1] is loaded.programs["step_one"] and table[3] is loaded.programs["step_two"]
    probe = loaded.runtime.kprobe(loaded.programs["dispatch"], engine)
    assert [probe.fire(pt_regs(di=i)) for i in range(5)] == [7, 100, 7, 200, 7]


def test_btf_maps_with_struct_keys_and_values(engine):
    obj, loaded = load("struct_values.o")
    flows, totals = obj.maps["flows"], obj.maps["totals"]
    assert (flows.type, flows.key_size, flows.value_size, flows.flags) == ("hash", 12, 24, 1)
    assert (totals.type, totals.pinning) == ("array", 1)
    assert flows.key_dtype.names == ("saddr", "daddr", "sport", "dport")
    assert flows.value_dtype.names == ("packets", "bytes", "last_len", "proto", "tag")
    probe = loaded.runtime.kprobe(loaded.programs["record_flow"], engine)
    assert probe.fire(pt_regs(di=1, si=2, dx=100)) == 1
    assert probe.fire(pt_regs(di=1, si=2, dx=50)) == 1
    assert probe.fire(pt_regs(di=5, si=2, dx=10)) == 1
    [(k1, v1), (k2, v2)] = sorted(loaded.maps["flows"].items(), key=lambda kv: int(kv[0]["saddr"]))
    assert (int(k1["saddr"]), int(k1["daddr"]), int(k1["sport"]), int(k1["dport"])) == (1, 2, 80, 443)
    assert (int(v1["packets"]), int(v1["bytes"]), int(v1["last_len"]), int(v1["proto"])) == (2, 150, 50, 6)
    assert bytes(v1["tag"].astype(np.uint8)) == b"ok\0"
    assert (int(k2["saddr"]), int(v2["packets"])) == (5, 1)
    t = loaded.maps["totals"][0]
    assert (int(t["packets"]), int(t["bytes"])) == (3, 160)


@pytest.mark.parametrize("fixture", ["legacy.o", "legacy_nobtf.o"])
def test_legacy_maps_section_and_version(engine, fixture):
    obj = ObjectFile.open(FIX / fixture)
    assert obj.kern_version == 0x050A00 and obj.license == "GPL"
    assert {n: (m.type, m.key_size, m.value_size, m.max_entries) for n, m in obj.maps.items()} == {
        "hits": ("hash", 4, 8, 64), "pair[0]": ("array", 4, 8, 4), "pair[1]": ("percpu_array", 4, 16, 2)}
    assert [(p.name, p.section) for p in obj.programs.values()] == \
        [("bpf_prog1", "kprobe/sys_write"), ("bpf_prog2", "kprobe/sys_read")]
    with pytest.raises(LoadError, match="kernel version 0x50a00"):
        obj.load(runtime=Runtime(kern_version=0x060100))
    loaded = obj.load(runtime=Runtime(kern_version=0x050A00))
    rt = loaded.runtime
    p1 = rt.kprobe(loaded.programs["bpf_prog1"], engine)
    for di in (1, 1, 2):
        assert p1.fire(pt_regs(di=di)) == 0
    assert dict(loaded.maps["hits"].items()) == {(1).to_bytes(4, "little"): (2).to_bytes(8, "little"),
                                                  (2).to_bytes(4, "little"): (1).to_bytes(8, "little")}
    assert rt.kprobe(loaded.programs["bpf_prog2"], engine).fire(pt_regs()) == 1
    assert loaded.maps["pair[0]"][2] == (42).to_bytes(8, "little")
    assert "pair[1]" not in loaded.maps                       # no program uses it


def test_iproute2_bpf_elf_map_and_partial_load(engine):
    obj = ObjectFile.open(FIX / "legacy_elf_map.o")
    m = obj.maps["acc_map"]
    assert (m.type, m.key_size, m.value_size, m.max_entries, m.pinning) == ("array", 4, 4, 2, 2)
    assert obj.programs["cls_main"].prog_type == "sched_cls"
    tc = obj.load(programs=["cls_main"])            # a tc classifier: runs over packets
    vm = VM(tc.programs["cls_main"], engine, runtime=tc.runtime)
    assert list(vm.run_packets([b"\0" * 60, b"\1" * 14]).astype(np.uint32).view(np.int32)) == [-1, -1]  # UNSPEC
    assert tc.maps["acc_map"][0] == (2).to_bytes(4, "little")
    loaded = obj.load(programs=["kp_noop"])
    assert list(loaded.programs) == ["kp_noop"]
    assert loaded.runtime.kprobe(loaded.programs["kp_noop"], engine).fire(pt_regs()) == 9
    assert loaded.maps["acc_map"][1] == (5).to_bytes(4, "little")


def test_socket_and_xdp_programs_load_and_run_over_packets(engine):
    obj = ObjectFile.open(FIX / "socket.o")
    assert obj.programs["count_protocols"].prog_type == "socket_filter"
    assert obj.programs["socket"] is obj.programs["count_protocols"]
    assert obj.programs["xdp_pass"].prog_type == "xdp"
    loaded = obj.load()
    vm = VM(loaded.programs["count_protocols"], engine, runtime=loaded.runtime)
    assert list(vm.run_packets([b"\0" * 60, b"", b"\xff" * 1500])) == [0, 0, 0]
    assert loaded.maps["proto_count"][0] == 3
    xdp = VM(loaded.programs["xdp_pass"], engine, runtime=loaded.runtime)
    assert list(xdp.run_packets([b"\0" * 64] * 3)) == [2, 2, 2] and xdp.run(b"\0" * 14) == 2
    # the type is overridable: as a raw program it runs on any memory
    obj = ObjectFile.open(FIX / "socket.o", prog_types={"socket": "raw", "xdp_pass": "raw"})
    loaded = obj.load()
    vm = VM(loaded.programs["count_protocols"], engine, runtime=loaded.runtime)
    assert vm.run(b"\0" * 16) == 0 and vm.run(b"") == 0
    assert loaded.maps["proto_count"][0] == 2
    assert VM(loaded.programs["xdp_pass"], engine, runtime=loaded.runtime).run(b"") == 2


def test_extern_calls_and_recursion_refused_others_load(engine):
    obj = ObjectFile.open(FIX / "extern_call.o")
    with pytest.raises(LoadError, match="unknown extern function 'mystery_func'") as e:
        obj.load(programs=["calls_extern"])
    assert e.value.pc == 1
    with pytest.raises(LoadError, match="recursive.*ping -> pong -> ping"):
        obj.load(programs=["calls_recursive"])
    with pytest.raises(LoadError, match="calls_extern"):
        obj.load()
    loaded = obj.load(programs=["fine"])
    assert loaded.runtime.kprobe(loaded.programs["fine"], engine).fire(pt_regs()) == 5


def test_load_only_the_maps_selected_programs_use():
    obj, loaded = load("kprobe_btf.o", programs=["handle_ret"])
    assert loaded.maps == {} and loaded.runtime.maps == {}
    with pytest.raises(LoadError, match="no program 'nope'"):
        obj.load(programs=["nope"])


def test_two_objects_share_one_runtime(engine):
    rt = Runtime()
    _, a = load("kprobe_btf.o", runtime=rt)
    _, b = load("calls.o", runtime=rt)
    assert a.runtime is b.runtime is rt and rt.map("counts") is a.maps["counts"]
    assert rt.kprobe(a.programs["handle_open"], engine).fire(pt_regs(di=1)) == 1
    assert rt.kprobe(b.programs["prog_b"], engine).fire(pt_regs(si=1)) == 35


# ------------------------------------------------------------------------------------ generated objects
def _legacy_pair(rela: bool, machine: int = 247, func_symbols: bool = True) -> bytes:
    """Two legacy maps; the program references the second through the section symbol + 20 (an addend in a
    RELA entry or in the lddw imm for REL) and returns its value at key 0 after storing 77."""
    o = Obj(machine=machine)
    o.sections.append(Sec("maps", elfgen.legacy_map_def(2, 4, 8, 1) * 2, flags=SHF_ALLOC | SHF_WRITE))
    o.symbols += [Sym("maps", "maps", 0, 0, STT_SECTION, 0), Sym("first", "maps", 0, 20, STT_OBJECT),
                  Sym("second", "maps", 20, 20, STT_OBJECT)]
    body = [
        I(0xB7, 0, 0, 0, 0), I(0x63, 10, 0, -4, 0),               # key = 0
        I(0x18, 1, 0, 0, 0 if rela else 20), I(0, 0, 0, 0, 0),    # lddw r1, maps + 20
        I(0xBF, 2, 10, 0, 0), I(0x07, 2, 0, 0, -4),
        I(0x85, 0, 0, 0, 1),                                       # map_lookup_elem
        I(0x15, 0, 0, 2, 0), I(0x7A, 0, 0, 0, 77), I(0x79, 0, 0, 0, 0),
        I(0x95, 0, 0, 0, 0)]
    o.code("socket1", body)
    if func_symbols:
        o.symbols.append(Sym("get_second", "socket1", 0, 8 * len(body)))
    else:
        o.symbols.append(Sym("get_second", "socket1", 0, 0, elfgen.STT_NOTYPE))
    o.relocs.append(Rel("socket1", 16, "maps", addend=20 if rela else None))
    o.sections.append(Sec("license", b"GPL\0", flags=SHF_ALLOC | SHF_WRITE))
    return o.build()


@pytest.mark.parametrize("rela", [False, True], ids=["rel", "rela"])
@pytest.mark.parametrize("machine", [247, 0], ids=["em_bpf", "em_none"])
def test_rel_rela_section_symbol_addend_and_em_none(engine, rela, machine):
    obj = ObjectFile.open(_legacy_pair(rela, machine), prog_types={"socket1": "raw"})
    assert obj.programs["get_second"].maps == ["second"]
    loaded = obj.load()
    assert VM(loaded.programs["get_second"], engine, runtime=loaded.runtime).run(b"") == 77
    assert loaded.maps["second"][0] == (77).to_bytes(8, "little")


def test_section_without_function_symbols_is_one_program(engine):
    obj = ObjectFile.open(_legacy_pair(False, func_symbols=False), prog_types={"socket1": "raw"})
    spec = obj.programs["get_second"]
    assert len(spec) == 11 and spec.section == "socket1"
    loaded = obj.load()
    assert VM(loaded.programs["get_second"], engine, runtime=loaded.runtime).run(b"") == 77


def _one_program(body, relocs=(), symbols=(), sections=()) -> bytes:
    o = Obj()
    o.sections += list(sections)
    o.code("kprobe/x", body)
    o.symbols += list(symbols) + [Sym("p", "kprobe/x", 0, 8 * len(body))]
    o.relocs += list(relocs)
    o.sections.append(Sec("license", b"GPL\0", flags=SHF_ALLOC | SHF_WRITE))
    return o.build()


def test_unknown_helper_refused_at_load():
    obj = ObjectFile.open(_one_program([I(0x85, 0, 0, 0, 9999), I(0x95, 0, 0, 0, 0)]))
    with pytest.raises(LoadError, match="'p'.*unknown helper id 9999") as e:
        obj.load()
    assert e.value.pc == 0


def test_extern_variable_and_function_address_refused():
    body = [I(0x18, 1, 0, 0, 0), I(0, 0, 0, 0, 0), I(0xB7, 0, 0, 0, 0), I(0x95, 0, 0, 0, 0)]
    obj = ObjectFile.open(_one_program(body, [Rel("kprobe/x", 0, "CONFIG_HZ")], [Sym("CONFIG_HZ", None, 0, 0, 0)]))
    with pytest.raises(LoadError, match="extern variable 'CONFIG_HZ'"):
        obj.load()
    obj = ObjectFile.open(_one_program(body, [Rel("kprobe/x", 0, "p")]))
    with pytest.raises(LoadError, match="address of function 'p'"):
        obj.load()


def test_bss_only_object_and_pseudo_call_to_section_symbol(engine):
    """A static subprogram called through the .text section symbol (imm = its slot - 1), as older clang
    emitted; .bss as SHT_NOBITS."""
    sub = [I(0xB7, 0, 0, 0, 0), I(0x95, 0, 0, 0, 0), I(0xB7, 0, 0, 0, 33), I(0x95, 0, 0, 0, 0)]
    o = Obj()
    o.code(".text", sub)
    o.sections.append(Sec(".bss", b"", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, size=16))
    o.symbols += [Sym(".text", ".text", 0, 0, STT_SECTION, 0), Sym("zero", ".text", 0, 16, bind=0),
                  Sym("thirty_three", ".text", 16, 16, bind=0), Sym("v", ".bss", 8, 8, STT_OBJECT)]
    body = [I(0x85, 0, 1, 0, 1), I(0x18, 1, 0, 0, 0), I(0, 0, 0, 0, 0), I(0x7B, 1, 0, 0, 0), I(0x95, 0, 0, 0, 0)]
    o.code("kprobe/x", body)
    o.symbols.append(Sym("p", "kprobe/x", 0, 8 * len(body)))
    o.relocs += [Rel("kprobe/x", 0, ".text", R_BPF_64_32), Rel("kprobe/x", 8, "v")]
    obj = ObjectFile.open(o.build())
    assert obj.programs["p"].subprograms == ["thirty_three"] and obj.maps[".bss"].value_size == 16
    loaded = obj.load()
    assert loaded.runtime.kprobe(loaded.programs["p"], engine).fire(pt_regs()) == 33
    assert loaded.maps[".bss"].values[0].view(np.uint64)[1] == 33


def test_top_level_export():
    import bpfjit
    assert bpfjit.ObjectFile is ObjectFile and "ObjectFile" in bpfjit.__all__


def test_malformed_structure_is_elf_error():
    with pytest.raises(ELFError):
        ObjectFile.open(b"not an elf at all" * 8)


# ------------------------------------------------------------------------------------ fixtures vs clang
def _clang():
    import os
    import shutil
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        if os.environ.get("CI"):
            pytest.fail("clang and libbpf-dev are required in CI (apt install clang-19 libbpf-dev)")
        pytest.skip("clang or libbpf-dev (bpf_helpers.h) not installed: cannot rebuild the ELF fixtures")
    return clang


@pytest.mark.parametrize("source", sorted(p.name for p in FIX.glob("*.c")))
def test_committed_fixture_matches_its_source(source, tmp_path):
    """The committed .o is what clang builds from the committed .c (same programs and maps; the code may
    differ between clang releases)."""
    import platform
    import subprocess
    clang = _clang()
    out = tmp_path / "x.o"
    arch = f"/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run([clang, "-O2", "-target", "bpf", "-g", f"-I{arch}", "-D__TARGET_ARCH_x86", "-c",
                    str(FIX / source), "-o", str(out)], check=True, capture_output=True)
    fresh, committed = ObjectFile.open(out), ObjectFile.open(FIX / source.replace(".c", ".o"))
    assert {n: (p.section, p.prog_type, p.maps) for n, p in fresh.programs.items()} == \
        {n: (p.section, p.prog_type, p.maps) for n, p in committed.programs.items()}
    assert {n: repr(m) for n, m in fresh.maps.items()} == {n: repr(m) for n, m in committed.maps.items()}


# ------------------------------------------------------------------------------------ CLI
def _cli(capsys, *argv):
    from bpfjit.cli import main
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_inspect(capsys):
    rc, out, _ = _cli(capsys, "inspect", FIX / "tailcall.o")
    assert rc == 0
    assert "dispatch" in out and "kprobe/dispatch" in out and "jump_table" in out and "prog_array" in out
    rc, _, err = _cli(capsys, "inspect", FIX / "calls.c")
    assert rc == 1 and "not an ELF object" in err


@pytest.mark.parametrize("engine_name", ["interp", "jit"])
def test_cli_run_elf(capsys, engine_name):
    rc, out, _ = _cli(capsys, "run", FIX / "calls.o", "--program", "prog_a", "--engine", engine_name)
    assert (rc, out) == (0, "0xa (10)\n")
    rc, out, _ = _cli(capsys, "run", FIX / "legacy.o", "--program", "kprobe/sys_read", "--engine", engine_name)
    assert (rc, out) == (0, "0x1 (1)\n")
    rc, _, err = _cli(capsys, "run", FIX / "calls.o", "--engine", engine_name)
    assert rc == 1 and "choose one with --program (prog_a, prog_b, prog_c)" in err
    rc, _, err = _cli(capsys, "run", FIX / "socket.o", "--program", "count_protocols")
    assert rc == 1 and "runs over a packet" in err


def test_cli_disasm_elf(capsys):
    rc, out, _ = _cli(capsys, "disasm", FIX / "kprobe_btf.o", "--program", "handle_open")
    assert rc == 0 and out.startswith("; program handle_open (section kprobe/do_sys_open, type kprobe, 23 ")
    assert "map counts" in out and "call 1" in out.replace("call map_lookup_elem", "call 1")
    rc, out, _ = _cli(capsys, "disasm", FIX / "calls.o", "--program", "prog_b", "--ir")
    assert rc == 0 and "define" in out


def test_legacy_map_defs_of_one_custom_size_without_btf(engine):
    """Two 40-byte definitions (a private struct with extra fields) and no BTF: one map per symbol."""
    defs = elfgen.legacy_map_def(2, 4, 8, 3) + bytes(20) + elfgen.legacy_map_def(1, 4, 4, 7) + bytes(20)
    o = Obj()
    o.sections.append(Sec("maps", defs, flags=SHF_ALLOC | SHF_WRITE))
    o.symbols += [Sym("a", "maps", 0, 40, STT_OBJECT), Sym("b", "maps", 40, 40, STT_OBJECT)]
    body = [I(0x18, 1, 0, 0, 0), I(0, 0, 0, 0, 0), I(0xB7, 0, 0, 0, 6), I(0x95, 0, 0, 0, 0)]
    o.code("kprobe/k", body)
    o.symbols.append(Sym("k", "kprobe/k", 0, 32))
    o.relocs.append(Rel("kprobe/k", 0, "b"))
    o.sections.append(Sec("license", b"GPL\0", flags=SHF_ALLOC | SHF_WRITE))
    obj = ObjectFile.open(o.build())
    assert {n: (m.type, m.value_size, m.max_entries) for n, m in obj.maps.items()} == \
        {"a": ("array", 8, 3), "b": ("hash", 4, 7)}
    loaded = obj.load()
    assert list(loaded.maps) == ["b"]
    assert loaded.runtime.kprobe(loaded.programs["k"], engine).fire(pt_regs()) == 6


def test_core_object_runs_with_compiled_offsets(engine):
    """BPF_CORE_READ (CO-RE field relocations in .BTF.ext, not applied): the task structs clang saw are the
    ones in memory, so the compiled offsets are right. Task memory lives in an array map the runtime knows
    (probe_read_kernel reads only accessible regions)."""
    from bpfjit.maps import ArrayMap
    rt = Runtime()
    tasks = ArrayMap(4, 32, 1)
    rt.add_map(tasks, "tasks")
    loaded = ObjectFile.open(FIX / "core_read.o").load(runtime=rt)
    v, base = tasks.values[0], tasks.direct_value_addr(0)
    v[:16].view(np.int32)[1] = 777                     # parent: pid 0, tgid 777
    v[16:32].view(np.uint64)[1] = base                  # child: real_parent = &parent
    assert rt.kprobe(loaded.programs["parent_tgid"], engine).fire(pt_regs(di=base + 16)) == 777


def test_iproute2_tail_call_sections(engine):
    """Sections "ID/KEY" fill slot KEY of the prog_array with bpf_elf_map id ID and take the object's
    program type; run here as raw programs (skb->len is the first u32 of mem)."""
    obj = ObjectFile.open(FIX / "iproute2_tail.o")
    assert [p.prog_type for p in obj.programs.values()] == ["sched_cls"] * 3
    assert obj.maps["jmp_map"].elf_id == 1 and obj.maps["jmp_map"].values == {0: "tail_zero", 2: "tail_two"}
    tc = obj.load()                                     # as tc classifiers over packets of 0..3 bytes
    vm = VM(tc.programs["cls_entry"], engine, runtime=tc.runtime)
    assert list(vm.run_packets([b"\0" * n for n in range(4)])) == [10, 99, 12, 99]
    obj = ObjectFile.open(FIX / "iproute2_tail.o", prog_types={"classifier": "raw"})
    assert [p.prog_type for p in obj.programs.values()] == ["raw"] * 3
    loaded = obj.load()
    vm = VM(loaded.programs["cls_entry"], engine, runtime=loaded.runtime)
    assert [vm.run(n.to_bytes(4, "little")) for n in range(4)] == [10, 99, 12, 99]
