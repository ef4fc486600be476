# Two guests on the hypervisor's switch through in-kernel virtio-net cards (`pci net`):
# a legacy virtio-net driver found on PCI 00:01.0 (I/O decoding on, its BAR read from
# configuration space). ROLE 1 pings, polling its rings with interrupts off: a broadcast
# frame of type 0x88b5 carrying a sequence number, then waits for the answer with that
# number, PINGS times, counting them in DONE, then `out 0x8f` (the only exit its client
# sees; `out 0x8e` if an answer was wrong), then the exit status (0, or 1 for a wrong
# answer) to the done port 0xf4, for a client that goes on (the vmx tool ends the run
# there). Any other ROLE echoes, halted between frames:
# the 8259 pair initialised (vectors 0x20-0x2f, all unmasked), `sti; hlt` until the card's
# interrupt (its handler reads the ISR, which lowers the line, and ends the interrupt),
# then each frame received goes back to its sender from this card's MAC, payload
# unchanged, counted in DONE; it never exits.
    .code32
    .intel_syntax noprefix
    .include "flat32.inc"
    .include "pic8259.inc"
    .include "vnet.inc"
    .set VARS, 0x6000
    .set ROLE, VARS             # written by the test
    .set PINGS, VARS + 4        # written by the test
    .set DONE, VARS + 8
    .set MAC, VARS + 16         # the card's, read from its configuration
    .set RXAV, VARS + 24        # available index of each queue, as last published
    .set TXAV, VARS + 28
    .set RXSEEN, VARS + 32      # receive used entries taken
    .set RXQ, 0x10000           # queue 0 (receive): table, available ring, used at +0x1000
    .set TXQ, 0x20000           # queue 1 (transmit)
    .set RXBUF, 0x30000
    .set TXBUF, 0x31000
    .set HDR, 10                # the legacy header
    .set FRAME, TXBUF + HDR
    .set FLEN, 60

# Puts descriptor 0 in the next slot of queue \q's available ring (128 entries), publishes
# the ring's new index (kept at \av) and notifies queue \n. Clobbers eax, ecx and edx.
    .macro offer q, av, n
    mov eax, [\av]
    mov ecx, eax
    and ecx, 127
    mov word ptr [\q + 0x804 + ecx * 2], 0
    inc eax
    mov [\av], eax
    mov [\q + 0x802], ax
    lea edx, [ebx + 0x10]
    mov ax, \n
    out dx, ax
    .endm

    flat32_start
    cli
    vnet_init RXQ, TXQ, MAC
    mov dword ptr [RXQ], RXBUF  # descriptor 0 of each queue, reused for every frame
    mov dword ptr [RXQ + 4], 0
    mov dword ptr [RXQ + 8], 2048
    mov word ptr [RXQ + 12], 2  # device-writable
    mov dword ptr [TXQ], TXBUF
    mov dword ptr [TXQ + 4], 0
    mov dword ptr [TXQ + 8], HDR + FLEN
    mov word ptr [TXQ + 12], 0
    call post_rx
    mov esi, MAC                # our source address in every frame
    mov edi, FRAME + 6
    mov ecx, 6
    rep movsb
    cmp dword ptr [ROLE], 1
    je pinger
    pic8259_init 0, 0           # every line unmasked

echo:
    mov ax, [RXQ + 0x1002]      # a frame already in?
    cmp ax, [RXSEEN]
    jne 1f
    sti                         # no: wait for the card's interrupt
    hlt
    cli
    jmp echo
1:  inc dword ptr [RXSEEN]
    mov esi, RXBUF + HDR + 12   # type and payload back as they came
    mov edi, FRAME + 12
    mov ecx, FLEN - 12
    rep movsb
    mov esi, RXBUF + HDR + 6    # to the sender
    mov edi, FRAME
    mov ecx, 6
    rep movsb
    call post_rx
    call send
    inc dword ptr [DONE]
    jmp echo

pinger:
    mov dword ptr [FRAME], 0xffffffff   # to everyone
    mov word ptr [FRAME + 4], 0xffff
    mov word ptr [FRAME + 12], 0xb588   # type 0x88b5, big-endian
2:  mov eax, [DONE]
    cmp eax, [PINGS]
    jae 3f
    mov [FRAME + 14], eax
    call send
    call await_rx
    mov eax, [RXBUF + HDR + 14]
    cmp eax, [DONE]
    jne bad
    cmp word ptr [RXBUF + HDR + 12], 0xb588
    jne bad
    mov esi, RXBUF + HDR        # for us
    mov edi, MAC
    mov ecx, 6
    repe cmpsb
    jne bad
    call post_rx
    inc dword ptr [DONE]
    jmp 2b
3:  out 0x8f, al
    xor al, al
    out 0xf4, al
4:  jmp 4b
bad:
    out 0x8e, al
    mov al, 1
    out 0xf4, al
    jmp bad

# The card's interrupt: reading the ISR lowers its line; then the end of interrupt to
# both chips (whichever line it came on).
card_irq:
    push eax
    push edx
    lea edx, [ebx + 0x13]
    in al, dx
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop edx
    pop eax
    iret

# Offers receive descriptor 0 again and notifies queue 0.
post_rx:
    offer RXQ, RXAV, 0
    ret

# Sends the frame at TXBUF (descriptor 0 of queue 1) and waits for the buffer back.
send:
    offer TXQ, TXAV, 1
1:  mov ax, [TXQ + 0x1002]
    cmp ax, [TXAV]
    jne 1b
    ret

# Waits until the card has filled the receive buffer.
await_rx:
1:  mov ax, [RXQ + 0x1002]
    cmp ax, [RXSEEN]
    je 1b
    inc dword ptr [RXSEEN]
    ret

    .p2align 3
    flat32_gdt

    .p2align 3
idt:
    .rept 32
    .quad 0
    .endr
    .rept 16                    # 0x20-0x2f: the PIC's lines, the card's among them
    gate card_irq
    .endr
idtr:
    .word idtr - idt - 1
    .long idt
