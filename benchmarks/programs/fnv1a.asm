# fnv1a: r0 = FNV-1a 64-bit hash of the r2 bytes at r1 (1 KiB in the benchmark).
    lddw %r0, 0xcbf29ce484222325   # offset basis
    jeq %r2, 0, exit
    lddw %r5, 0x100000001b3        # FNV prime
    mov %r3, %r1
    add %r3, %r2                   # end pointer
loop:
    ldxb %r4, [%r1]
    xor %r0, %r4
    mul %r0, %r5
    add %r1, 1
    jlt %r1, %r3, loop
    exit
