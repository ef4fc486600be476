# 32-bit flat with its own GDT and IDT: exceptions and interrupts.
    .code32
    .intel_syntax noprefix
    .include "flat32.inc"
    flat32_start
    int3                    # #bp exit when the client traps it (extrap 8)
    out 0x80, al            # the client now posts `exc #gp,0`
    out 0x81, al            # reached after the #gp handler ran
    sti
    out 0x82, al            # the client now posts `irq 32`
    nop
    out 0x83, al            # reached after the irq handler ran
    cli
    out 0x8f, al            # done
2:  jmp 2b

gp_handler:
    add esp, 4              # error code
    mov al, 0x0d
    out 0x90, al            # marker: #gp handled
    iret
bp_handler:
    mov al, 0x03
    out 0x93, al
    iret
irq_handler:
    mov al, 0x20
    out 0x91, al            # marker: irq 32 handled
    iret

    .p2align 3
    flat32_gdt

    .p2align 3
idt:
    .rept 3
    .quad 0
    .endr
    gate bp_handler         # 3
    .rept 9
    .quad 0
    .endr
    gate gp_handler         # 13
    .rept 18
    .quad 0
    .endr
    gate irq_handler        # 32
idtr:
    .word idtr - idt - 1
    .long idt
