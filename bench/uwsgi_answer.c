/* The floor of the uwsgi door's benchmark: accept a connection, read one uwsgi packet
 * (a 4-byte header whose bytes 1-2 are the body's size, little-endian, then the body),
 * answer "spooled" (255, 0, 0, 1) and close, storing nothing. What any spooler answering
 * one packet per connection could reach on the machine with the benchmark's senders.
 *
 * Built and run by bench/uwsgi_spooler.py: uwsgi_answer PORT (127.0.0.1, until killed). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void answer(int connection) {
    unsigned char packet[4 + 65535];
    size_t got = 0, wanted = 4;
    while (got < wanted) {
        ssize_t n = read(connection, packet + got, sizeof packet - got);
        if (n <= 0) return;
        got += (size_t)n;
        if (got >= 4) wanted = 4 + (size_t)(packet[1] | packet[2] << 8);
    }
    static const unsigned char spooled[4] = {255, 0, 0, 1};
    if (write(connection, spooled, sizeof spooled) != sizeof spooled) perror("write");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 128)) {
        perror("listen");
        return 1;
    }
    for (;;) {
        int connection = accept(listener, NULL, NULL);
        if (connection < 0) continue;
        answer(connection);
        close(connection);
    }
}
