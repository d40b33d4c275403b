# filter: loop-free event filter over one 64-byte record (r1 = record, r2 = its length); r0 = 1 to keep.
# Record layout (little endian), see workloads.py:
#   0 u32 pid | 4 u32 uid | 8 u64 timestamp | 16 u16 type | 18 u16 flags | 20 u32 size
#   24 char comm[16] | 40 u64 cgroup | 48 u32 cpu | 52..63 padding
# keep = len >= 64 && pid > 1 && uid != 0 && type in {3, 7} && !(flags & 0x4) && 128 <= size <= 65536
#        && comm starts with "bash" && cgroup != 0xdeadbeef00 && cpu < 64
    mov %r0, 0
    jlt %r2, 64, exit
    ldxw %r3, [%r1+0]
    jle %r3, 1, exit
    ldxw %r3, [%r1+4]
    jeq %r3, 0, exit
    ldxh %r3, [%r1+16]
    jeq %r3, 3, type_ok
    jne %r3, 7, exit
type_ok:
    ldxh %r3, [%r1+18]
    jset %r3, 0x4, exit
    ldxw %r3, [%r1+20]
    jlt %r3, 128, exit
    jgt %r3, 65536, exit
    ldxw %r3, [%r1+24]
    jne %r3, 0x68736162, exit      # "bash" as a little-endian u32
    ldxdw %r3, [%r1+40]
    lddw %r4, 0xdeadbeef00
    jeq %r3, %r4, exit
    ldxw %r3, [%r1+48]
    jge %r3, 64, exit
    mov %r0, 1
    exit
