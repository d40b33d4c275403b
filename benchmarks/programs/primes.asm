# primes: r0 = number of primes below 10000 by trial division (d*d <= n, n % d); no mem.
    mov %r0, 0                     # count
    mov %r1, 2                     # n
outer:
    mov %r2, 2                     # d
inner:
    mov %r3, %r2
    mul %r3, %r2
    jgt %r3, %r1, prime            # d*d > n: no divisor found
    mov %r4, %r1
    mod %r4, %r2
    jeq %r4, 0, next               # divisible: composite
    add %r2, 1
    ja inner
prime:
    add %r0, 1
next:
    add %r1, 1
    jlt %r1, 10000, outer
    exit
