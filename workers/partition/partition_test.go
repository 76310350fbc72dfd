package partition

import (
	"slices"
	"testing"
)

func TestAssignSplitsEvenlyAndAgrees(t *testing.T) {
	members := []string{"w-b", "w-a", "w-c"}
	seen := map[int]string{}
	for _, m := range members {
		for _, p := range Assign(members, 16, m) {
			if prev, ok := seen[p]; ok {
				t.Fatalf("partition %d given to %s and %s", p, prev, m)
			}
			seen[p] = m
		}
		if n := len(Assign(members, 16, m)); n < 5 || n > 6 {
			t.Errorf("%s owns %d of 16 partitions among 3 members", m, n)
		}
	}
	if len(seen) != 16 {
		t.Fatalf("%d of 16 partitions assigned", len(seen))
	}
	// Every process computes the same split whatever order it read.
	if !slices.Equal(Assign([]string{"w-c", "w-a", "w-b", "w-a"}, 16, "w-b"), Assign(members, 16, "w-b")) {
		t.Fatal("the split depends on the order of the list")
	}
	if Assign(members, 16, "stranger") != nil {
		t.Fatal("a process outside the list owns partitions")
	}
	if got := Assign([]string{"only"}, 4, "only"); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("a lone member owns %v", got)
	}
}

func TestKeySafe(t *testing.T) {
	if got := keySafe("host.name-1/x y"); got != "host_name-1_x_y" {
		t.Fatalf("keySafe = %q", got)
	}
}
