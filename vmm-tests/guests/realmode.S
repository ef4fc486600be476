# Real mode: every instruction here that exits is one the test expects, in order.
    .code16
    .intel_syntax noprefix
    .globl _start
_start:
    mov ax, 0x1234
    out 0x80, al            # io: out, port 0x80, ax 0x1234
    in al, 0x81             # io: in, port 0x81; the client supplies al
    out 0x82, al            # io: the client sees the value it supplied
    xor eax, eax
    cpuid                   # .cpuid
    mov ecx, 0x3a
    rdmsr                   # .rdmsr of a trapped MSR
    wrmsr                   # .wrmsr
    mov eax, cr0
    xor eax, 0x20           # flip NE, a bit the host owns: movcr
    mov cr0, eax
    mov eax, cr4
    or eax, 0x40000         # OSXSAVE, so xsetbv is legal
    mov cr4, eax
    xor ecx, ecx
    mov eax, 3
    xor edx, edx
    xsetbv                  # .xsetbv
    hlt                     # .hlt
    out 0x8f, al            # done
1:  jmp 1b
