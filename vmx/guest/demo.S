# The demo guest: a multiboot ELF kernel (no a.out kludge: the loader reads its program
# headers) that talks only through emulated devices, so every line it prints crossed
# the 9P line as io exits:
#   COM1 (0x3f8)   its output
#   PIC + PIT      three timer interrupts, delivered with `irq 32` and acknowledged by
#                  `*ack 32` wait lines, woken from hlt
#   CMOS (0x70)    the time of day
#   MSR, DR        SYSENTER_ESP (an MSR kept for the guest), DR0 and DR7 written and
#                  read back: rdmsr, wrmsr and mov dr exits
#   port 0xf4      "guest done": the value written is the tool's exit status
# It starts as vmx(1) starts guests: flat 32-bit protected mode, paging off, no GDT.

        .intel_syntax noprefix
        .code32
        .include "flat32.inc"           # vmm-tests/guests: the flat GDT and its loading

        .set COM1, 0x3f8
        .set DONE, 0xf4
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x3              # page-aligned modules, memory information
        .set TICKS, 3

        .text
        .globl _start
        .align 4
mbheader:
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

_start:
        mov esp, offset stack_top
        mov [mbmagic], eax
        mov [mbinfo], ebx
        # A GDT of our own: interrupt gates need a code selector to load.
        flat32_segments

        call uart_init
        lea esi, hello
        call puts

        cmp dword ptr [mbmagic], 0x2badb002
        jne bad_magic
        mov ebx, [mbinfo]
        lea esi, msg_mem
        call puts
        mov eax, [ebx + 8]              # mem_upper, KiB above 1 MiB
        shr eax, 10
        inc eax                         # plus the first MiB
        call putdec
        lea esi, msg_mib
        call puts
        test dword ptr [ebx], 1 << 2    # a command line?
        jz 2f
        lea esi, msg_cmdline
        call puts
        mov esi, [ebx + 16]
        call puts
        lea esi, msg_quote_nl
        call puts
2:
        xor eax, eax
        cpuid
        mov [vendor], ebx
        mov [vendor + 4], edx
        mov [vendor + 8], ecx
        lea esi, msg_cpu
        call puts
        lea esi, vendor
        call puts
        call newline

        # An MSR kept for the guest and two debug registers, written and read back. DR7
        # enables no breakpoint (bit 10 is reserved as 1; LE and GE only).
        mov ecx, 0x175                  # SYSENTER_ESP
        mov edx, 0x12345678
        mov eax, 0x9abcdef0
        wrmsr
        xor eax, eax
        xor edx, edx
        rdmsr
        push eax
        mov eax, edx
        lea esi, msg_msr
        call putlabel_hex
        pop eax
        lea esi, msg_space
        call putlabel_hex
        mov eax, 0x00c0ffee
        mov dr0, eax
        mov eax, 0x700
        mov dr7, eax
        mov eax, dr0
        lea esi, msg_dr0
        call putlabel_hex
        mov eax, dr7
        lea esi, msg_dr7
        call putlabel_hex
        call newline

        call rtc_time

        # Timer interrupts: IDT gate 32, PICs at 32/40 with only IRQ0 unmasked, PIT
        # channel 0 as a 100 Hz rate generator.
        mov eax, offset timer
        mov word ptr [idt + 32 * 8], ax
        mov word ptr [idt + 32 * 8 + 2], 0x08
        mov word ptr [idt + 32 * 8 + 4], 0x8e00
        shr eax, 16
        mov word ptr [idt + 32 * 8 + 6], ax
        lidt [idtr]
        mov al, 0x11
        out 0x20, al
        out 0xa0, al
        mov al, 0x20
        out 0x21, al
        mov al, 0x28
        out 0xa1, al
        mov al, 0x04
        out 0x21, al
        mov al, 0x02
        out 0xa1, al
        mov al, 0x01
        out 0x21, al
        out 0xa1, al
        mov al, 0xfe
        out 0x21, al
        mov al, 0xff
        out 0xa1, al
        mov al, 0x34
        out 0x43, al
        mov ax, 11932
        out 0x40, al
        mov al, ah
        out 0x40, al
        sti
3:      cmp dword ptr [ticks], TICKS
        jae 4f
        hlt
        jmp 3b
4:      cli
        mov al, 0xff                    # mask the timer again
        out 0x21, al
        mov eax, [ticks]
        call putdec
        lea esi, msg_ticks
        call puts

        lea esi, bye
        call puts
        xor eax, eax
        out DONE, al
5:      cli
        hlt
        jmp 5b

bad_magic:
        lea esi, msg_magic
        call puts
        mov al, 1
        out DONE, al
        jmp 5b

timer:
        push eax
        inc dword ptr [ticks]
        mov al, 0x20                    # non-specific EOI
        out 0x20, al
        pop eax
        iret

# 8 data bits, no parity, 1 stop bit, 115200 baud, FIFO on.
uart_init:
        mov dx, COM1 + 1
        xor al, al
        out dx, al                      # no UART interrupts
        mov dx, COM1 + 3
        mov al, 0x80
        out dx, al                      # DLAB
        mov dx, COM1
        mov al, 1
        out dx, al
        mov dx, COM1 + 1
        xor al, al
        out dx, al
        mov dx, COM1 + 3
        mov al, 0x03
        out dx, al
        mov dx, COM1 + 2
        mov al, 0xc7
        out dx, al
        mov dx, COM1 + 4
        mov al, 0x03
        out dx, al
        ret

# Waits for the transmitter once per string, not per byte: the emulated UART sends each
# byte as it is written, and every `in` is a 9P round trip.
puts:
        mov dx, COM1 + 5
6:      in al, dx
        test al, 0x20
        jz 6b
        mov dx, COM1
7:      lodsb
        test al, al
        jz 8f
        out dx, al
        jmp 7b
8:      ret

putc:
        mov dx, COM1
        out dx, al
        ret

newline:
        mov al, '\n'
        jmp putc

# eax in decimal.
putdec:
        push ebx
        mov ecx, 10
        lea ebx, numbuf + 11
        mov byte ptr [ebx], 0
9:      xor edx, edx
        div ecx
        add dl, '0'
        dec ebx
        mov [ebx], dl
        test eax, eax
        jnz 9b
        mov esi, ebx
        call puts
        pop ebx
        ret

# The string at esi, then eax as 8 hex digits.
putlabel_hex:
        push eax
        call puts
        pop eax
        mov ecx, 8
10:     rol eax, 4
        push eax
        and al, 0x0f
        add al, '0'
        cmp al, '9'
        jbe 11f
        add al, 'a' - '9' - 1
11:     call putc
        pop eax
        loop 10b
        ret

# Prints the CMOS time of day as HH:MM:SS (BCD, as the RTC keeps it by default).
rtc_time:
        lea esi, msg_rtc
        call puts
        mov al, 4
        call rtc_bcd
        mov al, ':'
        call putc
        mov al, 2
        call rtc_bcd
        mov al, ':'
        call putc
        xor al, al
        call rtc_bcd
        lea esi, msg_utc
        jmp puts

rtc_bcd:
        out 0x70, al
        in al, 0x71
        mov ah, al
        shr al, 4
        add al, '0'
        call putc
        mov al, ah
        and al, 0x0f
        add al, '0'
        jmp putc

        .data
        .align 8
        flat32_gdt 0x00cf9a000000ffff, 0x00cf92000000ffff  # accessed bits clear
        .align 4
idtr:   .word 33 * 8 - 1
        .long idt

hello:  .asciz "Hello from a guest over 9P!\n"
msg_mem: .asciz "memory: "
msg_mib: .asciz " MiB (multiboot mem_upper)\n"
msg_cmdline: .asciz "command line: \""
msg_quote_nl: .asciz "\"\n"
msg_cpu: .asciz "cpu: "
msg_msr: .asciz "msr: "
msg_space: .asciz " "
msg_dr0: .asciz ", dr0: "
msg_dr7: .asciz ", dr7: "
msg_rtc: .asciz "rtc: "
msg_utc: .asciz " UTC\n"
msg_ticks: .asciz " timer interrupts from the PIT through the PIC\n"
msg_magic: .asciz "bad multiboot magic\n"
bye:    .asciz "Goodbye: halting via port 0xf4.\n"

        .bss
        .align 8
idt:    .space 33 * 8
mbmagic: .long 0
mbinfo: .long 0
ticks:  .long 0
vendor: .space 16
numbuf: .space 12
        .align 16
stack:  .space 4096
stack_top:
