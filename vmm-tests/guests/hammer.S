# In-kernel devices under load (the `devices` ctl message): the 8259 pair initialised,
# the PIT at its fastest rate (a count of 1: an interrupt every 838 ns) with a handler
# that ends each interrupt and counts it, masking IRQ 0 after 1000; then COM1 written
# as fast as the guest can, forever, counting the bytes. The only exit the client sees
# is the marker `out 0x99` once the devices are set up.
    .code32
    .intel_syntax noprefix
    .include "flat32.inc"
    flat32_start
    mov al, 0x11            # ICW1 to both chips
    out 0x20, al
    out 0xa0, al
    mov al, 0x20            # ICW2: vectors 0x20 and 0x28
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4               # ICW3: the slave on IR2
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1               # ICW4: 8086 mode
    out 0x21, al
    out 0xa1, al
    mov al, 0xfe            # only IRQ 0
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0x34            # channel 0, lo/hi, rate generator
    out 0x43, al
    mov al, 1               # count 1
    out 0x40, al
    xor al, al
    out 0x40, al
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
    .word timer - _start + 0x1000   # 32: an interrupt gate to the handler
    .word 0x08
    .word 0x8e00
    .word 0
idtr:
    .word idtr - idt - 1
    .long idt

# The counters, at 0x1200 (the test reads them through the segment).
    .org 0x200
ticks:
    .long 0
bytes:
    .long 0
