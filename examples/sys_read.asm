# tail-call target for read (0): keep reads slower than 100 us.
        ldxdw %r2, [%r1+96]             # latency
        mov %r0, 0
        jle %r2, 100000, +1
        mov %r0, 1
        exit
