# 64-bit code: the client builds page tables in the segment and sets cr0, cr3, cr4, efer
# and cs through regs before the first go.
    .code64
    .intel_syntax noprefix
    .globl _start
_start:
    mov rax, 0x1122334455667788
    mov rbx, rax
    shr rbx, 32
    out 0x80, al            # io with ax 0x1122334455667788
    lea rcx, [rip + _start]
    mov rax, rcx
    out 0x81, al            # ax holds a 64-bit rip-relative address: 0x1000
    out 0x8f, al
1:  jmp 1b
