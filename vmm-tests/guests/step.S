# Single-byte instructions to step over, then an exit the test waits for.
    .code32
    .intel_syntax noprefix
    .globl _start
_start:
    nop
    inc eax
    inc eax
    inc eax
    out 0x80, al            # io with ax 3 when run freely after one step
    out 0x8f, al
1:  jmp 1b
