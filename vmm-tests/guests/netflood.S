# A guest that floods its in-kernel virtio-net card (`pci net`): the card set up as
# pingpong.S sets it up (vnet.inc), no receive buffer ever offered (frames for it stay at
# its switch port), then forever, with interrupts off and no exit: the transmit ring
# filled (its available index moved to the used index plus 128, every slot naming its own
# descriptor) and notified, the round counted in ROUNDS. Descriptor i carries frame i mod
# 3: a broadcast, a unicast to 02:00:00:00:00:ee (nobody's), a unicast to PEER (written
# by the test), each 60 bytes of type 0x88b5 from the card's MAC.
    .code32
    .intel_syntax noprefix
    .include "flat32.inc"
    .include "vnet.inc"
    .set VARS, 0x6000
    .set PEER, VARS             # written by the test
    .set ROUNDS, VARS + 8
    .set MAC, VARS + 16         # the card's, read from its configuration
    .set RXQ, 0x10000           # queue 0 (receive): never given a buffer
    .set TXQ, 0x20000           # queue 1 (transmit): table, available ring, used at +0x1000
    .set QSIZE, 128
    .set FRAMES, 0x30000        # frame k (header and frame) at FRAMES + k * 0x100
    .set HDR, 10                # the legacy header
    .set FLEN, 60
    .set TOALL, FRAMES + HDR
    .set TONOBODY, TOALL + 0x100
    .set TOPEER, TOALL + 0x200
    flat32_start
    cli
    vnet_init RXQ, TXQ, MAC
    mov edx, TOALL              # each frame's source and type
1:  mov eax, [MAC]
    mov [edx + 6], eax
    mov ax, [MAC + 4]
    mov [edx + 10], ax
    mov word ptr [edx + 12], 0xb588     # 0x88b5, big-endian
    add edx, 0x100
    cmp edx, TOPEER
    jbe 1b
    mov dword ptr [TOALL], 0xffffffff   # and destination
    mov word ptr [TOALL + 4], 0xffff
    mov dword ptr [TONOBODY], 0x00000002
    mov word ptr [TONOBODY + 4], 0xee00
    mov eax, [PEER]
    mov [TOPEER], eax
    mov ax, [PEER + 4]
    mov [TOPEER + 4], ax
    xor ecx, ecx                # descriptor i: frame i mod 3; available slot i: i
    mov esi, FRAMES
2:  mov edi, ecx
    shl edi, 4
    mov [TXQ + edi], esi
    mov dword ptr [TXQ + edi + 4], 0
    mov dword ptr [TXQ + edi + 8], HDR + FLEN
    mov dword ptr [TXQ + edi + 12], 0   # no flags, no next
    mov [TXQ + 0x804 + ecx * 2], cx
    add esi, 0x100
    cmp esi, FRAMES + 0x300
    jb 3f
    mov esi, FRAMES
3:  inc ecx
    cmp ecx, QSIZE
    jb 2b
    lea edx, [ebx + 0x10]       # the notify register, from here on

flood:
    mov ax, [TXQ + 0x1002]      # every slot the card gave back, offered again
    add ax, QSIZE
    mov [TXQ + 0x802], ax
    mov ax, 1
    out dx, ax
    inc dword ptr [ROUNDS]
    jmp flood

    .p2align 3
    flat32_gdt

    .p2align 3
idt:
    .quad 0
idtr:
    .word idtr - idt - 1
    .long idt
