/*
 * bench-9p's peer: plan9port's lib9p (srv.c and its File tree) serving the tree bench-9p
 * needs, a `hello` file in a root anyone may create in, on a unix socket, one forked
 * process per connection (lib9p's srv serves one connection). Built by bench-9p against
 * a plan9port tree whose lib9p, lib9 and libthread are built (`--lib9p DIR`).
 */
#include <u.h>
#include <signal.h>
#include <sys/wait.h>
#include <libc.h>
#include <fcall.h>
#include <thread.h>
#include <9p.h>

typedef struct Blob Blob;
struct Blob {
	uchar *p;
	vlong n;	/* bytes held */
	vlong cap;
};

static Blob*
newblob(void)
{
	return emalloc9p(sizeof(Blob));
}

static void
peerread(Req *r)
{
	Blob *b = r->fid->file->aux;
	vlong off = r->ifcall.offset;
	long n = r->ifcall.count;

	if(off >= b->n)
		n = 0;
	else if(off + n > b->n)
		n = b->n - off;
	if(n > 0)
		memmove(r->ofcall.data, b->p + off, n);
	r->ofcall.count = n;
	respond(r, nil);
}

static void
peerwrite(Req *r)
{
	Blob *b = r->fid->file->aux;
	vlong end = r->ifcall.offset + r->ifcall.count;

	if(end > b->cap){
		b->cap = end;
		b->p = erealloc9p(b->p, b->cap);
	}
	if(end > b->n){
		b->n = end;
		r->fid->file->dir.length = end;
	}
	memmove(b->p + r->ifcall.offset, r->ifcall.data, r->ifcall.count);
	r->ofcall.count = r->ifcall.count;
	respond(r, nil);
}

static void
peeropen(Req *r)
{
	Blob *b = r->fid->file ? r->fid->file->aux : nil;

	if(b && (r->ifcall.mode & OTRUNC)){
		b->n = 0;
		r->fid->file->dir.length = 0;
	}
	respond(r, nil);
}

static void
peercreate(Req *r)
{
	File *f = createfile(r->fid->file, r->ifcall.name, r->fid->uid, r->ifcall.perm, newblob());

	if(f == nil){
		respond(r, "create failed");
		return;
	}
	r->fid->file = f;
	r->ofcall.qid = f->dir.qid;
	respond(r, nil);
}

static void
peerdestroy(File *f)
{
	Blob *b = f->aux;

	if(b){
		free(b->p);
		free(b);
	}
}

static Srv peer = {
	.open = peeropen,
	.read = peerread,
	.write = peerwrite,
	.create = peercreate,
};

#undef waitpid	/* libc.h's is Plan 9's; this is the system's */

static void
reap(int sig)
{
	USED(sig);
	while(waitpid(-1, nil, WNOHANG) > 0)
		;
}

void
threadmain(int argc, char **argv)
{
	char adir[40], ldir[40];
	int afd, lfd, c;
	File *hello;
	Blob *b;
	static char msg[] = "hello, world\n";

	if(argc != 2)
		sysfatal("usage: lib9p-peer unix!SOCKET");
	peer.tree = alloctree("glenda", "glenda", DMDIR|0777, peerdestroy);
	b = newblob();
	b->n = b->cap = strlen(msg);
	b->p = emalloc9p(b->cap);
	memmove(b->p, msg, b->n);
	hello = createfile(peer.tree->root, "hello", "glenda", 0644, b);
	hello->dir.length = b->n;
	closefile(hello);

	if((afd = announce(argv[1], adir)) < 0)
		sysfatal("announce %s: %r", argv[1]);
	/* Reap each connection's process as it ends, so its CPU time is counted in ours
	 * (/proc's cutime and cstime: bench-9p reports the server's CPU per operation). */
	signal(SIGCHLD, reap);
	for(;;){
		if((lfd = listen(adir, ldir)) < 0)
			sysfatal("listen: %r");
		c = accept(lfd, ldir);
		close(lfd);
		if(c < 0)
			continue;
		if(fork() == 0){
			close(afd);
			peer.infd = peer.outfd = c;
			srv(&peer);
			threadexitsall(nil);
		}
		close(c);
	}
}
