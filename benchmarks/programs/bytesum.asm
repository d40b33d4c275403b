# bytesum: r0 = sum of the r2 bytes at r1 (a 1 KiB buffer in the benchmark). Loop shaped as clang emits it.
    mov %r0, 0
    jeq %r2, 0, exit
    mov %r3, %r1
    add %r3, %r2                   # end pointer
loop:
    ldxb %r4, [%r1]
    add %r0, %r4
    add %r1, 1
    jlt %r1, %r3, loop
    exit
