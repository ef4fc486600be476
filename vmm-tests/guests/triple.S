# No usable IDT: int3 faults, the #gp faults, the #df faults: a triple fault.
    .code32
    .intel_syntax noprefix
    .globl _start
_start:
    lidt [idtr]
    int3
1:  jmp 1b
idtr:
    .word 0
    .long 0
