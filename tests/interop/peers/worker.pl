# Usage: perl worker.pl PORT JOBS: serves reverse and fail, exits after JOBS jobs.
use strict;
use warnings;
use Gearman::Worker;
my $worker = Gearman::Worker->new(job_servers => ["127.0.0.1:$ARGV[0]"]);
$worker->register_function(reverse => sub { return scalar reverse $_[0]->arg; });
$worker->register_function(fail => sub { die "perl failure\n"; });
my $done = 0;
$worker->work(stop_if => sub { return $done >= $ARGV[1]; },
              on_complete => sub { $done++ }, on_fail => sub { $done++ });
