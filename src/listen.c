/*
 * listen.c: listening sockets: the app's own (SO_REUSEPORT for prefork
 * workers, the full backlog evhttp_bind_socket does not give) and the
 * bound, never-listening socket with which prefork's parent holds the
 * port.
 *
 * Threads: whoever creates the socket: the loop thread (the app's), the
 * supervisor (prefork's). Nothing here is shared.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

int evapi__bound_socket(const char *host, int port, int reuse_port,
                        int listen_too)
{
	struct addrinfo hints, *res = NULL, *ai;
	char service[16];
	int fd = -1, one = 1;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof service, "%d", port);
	if (getaddrinfo(host, service, &hints, &res) != 0)
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
		            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd < 0)
			continue;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
		    (!reuse_port || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		                               sizeof one) == 0) &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    /* The kernel caps the backlog at net.core.somaxconn: a
		     * burst of connections waits there instead of being
		     * dropped and retried a second later. */
		    (!listen_too || listen(fd, 65535) == 0))
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int evapi__socket_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

int evapi__listen_socket(evapi_app *app, int *port)
{
	int fd = evapi__bound_socket(app->host, app->cfg.port, app->reuse_port, 1);
	if (fd >= 0)
		*port = evapi__socket_port(fd);
	return fd;
}
