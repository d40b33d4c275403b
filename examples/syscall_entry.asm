# kprobe on the syscall entry path: r1 = struct pt_regs (x86-64, read-only)
#   di [+112] = syscall number, si [+104] = pid, dx [+96] = latency in ns
# Counts events per pid (hash map `counts`), keeps a log2 histogram of the latency (array map `hist`),
# then tail-calls the program of this syscall (prog_array `syscalls`); without one, keeps slow events.
        mov %r6, %r1
        ldxdw %r7, [%r6+104]            # pid
        ldxdw %r8, [%r6+96]             # latency
# ---- counts[pid] += 1 ----
        stxw [%r10-4], %r7
        lddw %r1, map(counts)
        mov %r2, %r10
        add %r2, -4
        call map_lookup_elem
        jeq %r0, 0, first_event
        mov %r1, 1
        lock add [%r0+0], %r1
        ja histogram
first_event:
        stdw [%r10-16], 1
        lddw %r1, map(counts)
        mov %r2, %r10
        add %r2, -4
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0                      # BPF_ANY
        call map_update_elem
# ---- hist[log2(latency)] += 1; r2 = floor(log2(r1)) by halving (0 for 0 and 1) ----
histogram:
        mov %r1, %r8
        mov %r2, 0
        mov %r3, %r1
        rsh %r3, 32
        jeq %r3, 0, +2
        add %r2, 32
        mov %r1, %r3
        mov %r3, %r1
        rsh %r3, 16
        jeq %r3, 0, +2
        add %r2, 16
        mov %r1, %r3
        mov %r3, %r1
        rsh %r3, 8
        jeq %r3, 0, +2
        add %r2, 8
        mov %r1, %r3
        mov %r3, %r1
        rsh %r3, 4
        jeq %r3, 0, +2
        add %r2, 4
        mov %r1, %r3
        mov %r3, %r1
        rsh %r3, 2
        jeq %r3, 0, +2
        add %r2, 2
        mov %r1, %r3
        rsh %r1, 1
        add %r2, %r1
        stxw [%r10-4], %r2
        lddw %r1, map(hist)
        mov %r2, %r10
        add %r2, -4
        call map_lookup_elem
        jeq %r0, 0, dispatch
        mov %r1, 1
        lock add [%r0+0], %r1
# ---- per-syscall program: tail_call(ctx, syscalls, nr) does not return when the slot is set ----
dispatch:
        mov %r1, %r6
        lddw %r2, map(syscalls)
        ldxdw %r3, [%r6+112]
        call tail_call
# ---- no program for this syscall: keep the event if it took more than 1 ms ----
        mov %r0, 0
        jle %r8, 1000000, +1
        mov %r0, 1
        exit
