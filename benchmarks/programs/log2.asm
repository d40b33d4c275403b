# log2: r0 = sum of floor(log2(x)) over the u64 values at r1 (r2 bytes; 127 values in the benchmark);
# log2(0) counts as 0. Branchy binary search: 32, 16, 8, 4, 2, 1.
    mov %r0, 0
    mov %r6, %r1
    add %r6, %r2                   # end pointer
    mov %r7, %r1
    add %r7, 8
    jgt %r7, %r6, exit             # fewer than 8 bytes
loop:
    ldxdw %r4, [%r1]
    mov %r3, 0                     # log2 of this value
    mov %r5, %r4
    rsh %r5, 32
    jeq %r5, 0, b16
    mov %r4, %r5
    add %r3, 32
b16:
    mov %r5, %r4
    rsh %r5, 16
    jeq %r5, 0, b8
    mov %r4, %r5
    add %r3, 16
b8:
    mov %r5, %r4
    rsh %r5, 8
    jeq %r5, 0, b4
    mov %r4, %r5
    add %r3, 8
b4:
    mov %r5, %r4
    rsh %r5, 4
    jeq %r5, 0, b2
    mov %r4, %r5
    add %r3, 4
b2:
    mov %r5, %r4
    rsh %r5, 2
    jeq %r5, 0, b1
    mov %r4, %r5
    add %r3, 2
b1:
    rsh %r4, 1
    add %r3, %r4                   # r4 is 0 or 1 here
    add %r0, %r3
    add %r1, 8
    add %r7, 8
    jle %r7, %r6, loop             # another whole value fits
    exit
