/* net.h - TCP listener on 127.0.0.1 and the worker thread pool. */
#ifndef KVD_NET_H
#define KVD_NET_H

/* Returns the listening socket, stores the bound port; -1 on error. */
int net_listen(int port, int *bound_port);
/* Starts nworkers threads, each serving whole connections. */
int net_start(int lfd, int nworkers);
/* Asks the workers to stop and joins them (open connections are closed). */
void net_stop(void);

#endif
