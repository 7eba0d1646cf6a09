# Usage: perl uwsgi_spool.pl HOST:PORT key=value...
# Networked spooling as Perl's Net::uwsgi does it: uwsgi_pkt(17, 0, vars), read the
# 4-byte reply header, 0 unless modifier1 is 255, else modifier2 (1 = spooled).
use strict;
use warnings;
use IO::Socket::INET;

sub uwsgi_pkt {
    my ($modifier1, $modifier2, $vars) = @_;
    my $block = '';
    foreach my $key (sort keys %$vars) {
        $block .= pack('v', length($key)) . $key . pack('v', length($vars->{$key})) . $vars->{$key};
    }
    return pack('CvC', $modifier1, length($block), $modifier2) . $block;
}

sub uwsgi_spool {
    my ($address, $vars) = @_;
    my $socket = IO::Socket::INET->new(PeerAddr => $address) or die "connect $address: $!";
    $socket->syswrite(uwsgi_pkt(17, 0, $vars));
    my $reply = '';
    $socket->sysread($reply, 4) or return 0;
    my ($modifier1, $size, $modifier2) = unpack('CvC', $reply);
    return 0 unless $modifier1 == 255;
    return $modifier2;
}

my ($address, @pairs) = @ARGV;
print uwsgi_spool($address, { map { split(/=/, $_, 2) } @pairs }), "\n";
