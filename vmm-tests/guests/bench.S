# 32-bit flat: the exit benchmark (src/bin/bench-exits.rs). Each pass runs ebx
# iterations of `loop` (one instruction each), then exits on out 0x80; the client
# resumes it after the out. Instructions per exit: ebx + 4 (jmp, mov, jecxz, out).
    .code32
    .intel_syntax noprefix
    .globl _start
_start:
    mov ecx, ebx
    jecxz 2f
1:  loop 1b
2:  out 0x80, al            # io exit; the client sets pc past it
    jmp _start
