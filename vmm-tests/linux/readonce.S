# readonce FILE: one read(2) of up to 4096 bytes from FILE opened O_NONBLOCK, written to
# stdout; exit status 0, or the errno of the call that failed. A Linux tool for the v9fs
# test's initramfs: v9fs repeats Treads until a read(2)'s buffer is full unless the file
# is O_NONBLOCK, and a read of #X's `wait` past its one line blocks for the next exit.
# x86-64 Linux system calls: read 0, write 1, open 2, exit 60.
    .intel_syntax noprefix
    .globl _start
_start:
    mov rdi, [rsp + 16]     # argv[1]
    mov eax, 22             # EINVAL without one
    test rdi, rdi
    jz 2f
    mov esi, 0x800          # O_RDONLY | O_NONBLOCK
    mov eax, 2
    syscall
    test rax, rax
    js 1f
    mov rdi, rax
    lea rsi, [rip + buf]
    mov edx, 4096
    xor eax, eax
    syscall
    test rax, rax
    js 1f
    mov rdx, rax
    mov edi, 1
    lea rsi, [rip + buf]
    mov eax, 1
    syscall
    test rax, rax
    js 1f
    xor edi, edi
    mov eax, 60
    syscall
1:  neg rax
2:  mov edi, eax
    mov eax, 60
    syscall

    .bss
buf: .space 4096
