# 32-bit flat: EPT violations. The test maps 0-0x10000 rwx and 0x10000-0x11000 r-x.
    .code32
    .intel_syntax noprefix
    .globl _start
_start:
    mov eax, [0x200000]     # unmapped: eptfault with pa 0x200000
    out 0x80, al            # reached after the client maps the page and retries
    mov byte ptr [0x10010], 1   # read-only: eptfault with pa 0x10010
    out 0x8f, al            # done
1:  jmp 1b
