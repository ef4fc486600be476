# In-kernel devices under load (the `devices` ctl message): the 8259 pair initialised,
# the PIT at its fastest rate (a count of 1: an interrupt every 838 ns) with a handler
# that ends each interrupt and counts it, masking IRQ 0 after 1000; COM2 probed as
# Linux's 8250 driver begins (IER and the scratch register read back, kept at `com2`)
# and sent a byte; then COM1 written as fast as the guest can, forever, counting the
# bytes. The only exit the client sees is the marker `out 0x99` once the devices are
# set up.
    .code32
    .intel_syntax noprefix
    .include "flat32.inc"
    .include "pic8259.inc"
    flat32_start
    pic8259_init 0xfe, 0xff # only IRQ 0
    mov al, 0x34            # channel 0, lo/hi, rate generator
    out 0x43, al
    mov al, 1               # count 1
    out 0x40, al
    xor al, al
    out 0x40, al
    mov dx, 0x2f9           # COM2's IER: all four sources on, read back
    mov al, 0x0f
    out dx, al
    in al, dx
    mov [com2], al
    xor al, al
    out dx, al
    mov dx, 0x2ff           # its scratch register
    mov al, 0x5a
    out dx, al
    in al, dx
    mov [com2 + 1], al
    mov dx, 0x2f8           # a byte to nobody
    mov al, 'c'
    out dx, al
    xor al, al
    out 0x99, al            # marker for the client
    sti
    mov dx, 0x3f8
2:  mov al, 'h'
    out dx, al
    inc dword ptr [bytes]
    jmp 2b

timer:
    push eax
    inc dword ptr [ticks]
    cmp dword ptr [ticks], 1000
    jb 3f
    mov al, 0xff            # enough: IRQ 0 off
    out 0x21, al
3:  mov al, 0x20
    out 0x20, al
    pop eax
    iret

    .p2align 3
    flat32_gdt
    .p2align 3
idt:
    .rept 32
    .quad 0
    .endr
    gate timer              # 32
idtr:
    .word idtr - idt - 1
    .long idt

# The counters, at 0x1200 (the test reads them through the segment).
    .org 0x200
ticks:
    .long 0
bytes:
    .long 0
com2:
    .long 0
