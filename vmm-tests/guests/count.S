# 32-bit flat: counts forever with interrupts off (the SMP tests read the counter at
# 0x1200 through the segment while the guest runs). No exit but the host's.
    .code32
    .intel_syntax noprefix
    .globl _start
_start:
    cli
1:  inc dword ptr [0x1200]
    jmp 1b
