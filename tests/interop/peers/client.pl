# Usage: perl client.pl PORT: foreground, unique and background submissions.
use strict;
use warnings;
use Gearman::Client;
my $client = Gearman::Client->new(job_servers => ["127.0.0.1:$ARGV[0]"]);
my $result = $client->do_task("reverse", "perl");
print "normal:", $$result, "\n";
$result = $client->do_task("reverse", "unique", { uniq => "perl-u" });
print "unique:", $$result, "\n";
my $failed = $client->do_task("fail", "x");
print "fail:", defined($failed) ? "result" : "undef", "\n";
my $handle = $client->dispatch_background("reverse", "bg");
print "background:", ($handle =~ m{//H:.+:\d+$} ? "handle" : $handle), "\n";
