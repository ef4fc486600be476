//! Multiboot headers and the 32-bit entry stub: identity-map the low 4 GiB with 2 MiB
//! pages, enter long mode on a temporary GDT, and call `kmain(magic, info)`.
#![allow(unsafe_code)]

#[cfg(target_os = "none")] // the kernel's entry: only in the image, never on the host
core::arch::global_asm!(
    r#"
.section .multiboot, "a"
.balign 8
mb2_header:
    .long 0xE85250D6            /* Multiboot2 magic */
    .long 0                     /* i386 */
    .long 48                    /* header length */
    .long 0x17ADAEFA            /* -(magic + arch + length) */
    /* A framebuffer, optional, any mode (0x0x0: GRUB's "auto"): under UEFI there is no
       text mode, so this is how the screen console gets a screen (console.rs). Under BIOS
       grub.cfg keeps VGA text (gfxpayload=text, qemu/build-iso). */
    .short 5, 1                 /* framebuffer tag, optional */
    .long 20
    .long 0, 0, 0               /* width, height, depth: no preference */
    .long 0                     /* pad to 8 */
    .short 0, 0                 /* end tag */
    .long 8
.balign 4
mb1_header:
    .long 0x1BADB002            /* Multiboot1 magic */
    .long 0x00010002            /* memory map wanted; a.out-kludge addresses valid */
    .long 0xE4514FFC            /* -(magic + flags) */
    .long mb1_header
    .long __kernel_start
    .long __load_end
    .long __kernel_end
    .long start32

.section .boot.text, "ax"
.code32
.global start32
start32:
    cli
    cld
    mov esp, offset boot_stack_top
    mov [boot_magic], eax
    mov [boot_info], ebx

    /* 2048 PD entries of 2 MiB: 4 GiB, present | writable | large */
    mov edi, offset boot_pd
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [edi + ecx*8], eax
    mov dword ptr [edi + ecx*8 + 4], 0
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov edi, offset boot_pdpt
    mov eax, offset boot_pd
    or eax, 3
    xor ecx, ecx
3:
    mov [edi + ecx*8], eax
    mov dword ptr [edi + ecx*8 + 4], 0
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jne 3b

    mov eax, offset boot_pdpt
    or eax, 3
    mov [boot_pml4], eax

    mov eax, offset boot_pml4
    call long_mode32

    lgdt [boot_gdtr]
    push 0x08
    mov eax, offset start64
    push eax
    retf

/* Paging on in long mode with the PML4 at eax (below 4 GiB): PAE, CR3, EFER.LME, then
   CR0.PG. The caller, now in compatibility mode, far-jumps to 64-bit code. The boot CPU
   and every AP (arch/ap.rs) come this way. */
.global long_mode32
long_mode32:
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20                /* PAE */
    mov cr4, eax
    mov ecx, 0xC0000080         /* EFER */
    rdmsr
    or eax, 0x100               /* LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80010023          /* PG | WP | NE | MP | PE */
    mov cr0, eax
    ret

.code64
start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, [rip + boot_magic]
    mov esi, [rip + boot_info]
    call kmain
4:
    cli
    hlt
    jmp 4b

.section .rodata
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 64-bit code */
    .quad 0x00CF92000000FFFF    /* data */
boot_gdtr:
    .short 23
    .long boot_gdt

.section .bss
.balign 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd: .skip 4096 * 4
boot_stack: .skip 0x80000
boot_stack_top:
boot_magic: .skip 4
boot_info: .skip 4
"#
);

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The physical range the kernel image (with its bss) occupies.
pub fn kernel_range() -> (u64, u64) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    )
}

/// Called by the entry stub in long mode with the loader's magic and information address.
/// The image's entry is the one call from arch up into the kernel: everything else above
/// arch is handed down to it (the AP entry, the frame source).
#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    crate::kmain(magic, info)
}
