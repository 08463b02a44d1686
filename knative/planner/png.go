package planner

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	colBG      = color.RGBA{255, 255, 255, 255}
	colAxis    = color.RGBA{60, 60, 60, 255}
	colGrid    = color.RGBA{225, 225, 225, 255}
	colDemand  = color.RGBA{200, 200, 200, 255}
	colReady   = color.RGBA{31, 119, 180, 255}
	colDesired = color.RGBA{255, 127, 14, 255}
	colP99     = color.RGBA{214, 39, 40, 255}
	colP50     = color.RGBA{44, 160, 44, 255}
	colObj     = color.RGBA{148, 103, 189, 255}
	colBad     = color.RGBA{0, 0, 0, 255}
)

type panel struct {
	img        *image.RGBA
	x0, y0     int // top left of the plot area
	w, h       int
	tMax       float64
	yMax       float64
	log        bool
	yMin       float64 // log scale only
	rightMax   float64 // second axis (0: none)
	rightLabel string
}

func (p *panel) px(t float64) int { return p.x0 + int(t/p.tMax*float64(p.w)) }

func (p *panel) py(v float64) int {
	if p.log {
		v = math.Max(v, p.yMin)
		f := math.Log(v/p.yMin) / math.Log(p.yMax/p.yMin)
		return p.y0 + p.h - int(math.Min(f, 1)*float64(p.h))
	}
	return p.y0 + p.h - int(math.Min(v/p.yMax, 1)*float64(p.h))
}

func (p *panel) pyRight(v float64) int {
	return p.y0 + p.h - int(math.Min(v/p.rightMax, 1)*float64(p.h))
}

// WritePNG draws the plan of the profile's busiest function: demand and
// pods over time (top), latency against the objective (bottom).
func WritePNG(path string, res *Result, obj Objective) error {
	name := ""
	best := -1.0
	for _, f := range res.Profile.SortedFunctions() {
		if res.Profile.Functions[f] > best {
			name, best = f, res.Profile.Functions[f]
		}
	}
	var rows []Second
	for _, r := range res.Rows {
		if r.Function == name {
			rows = append(rows, r)
		}
	}
	const W, H = 1200, 720
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)
	tMax := float64(len(rows))
	demandMax, podsMax, latMax := 1.0, 1.0, obj.P99Ms
	for _, r := range rows {
		demandMax = math.Max(demandMax, r.Demand)
		podsMax = math.Max(podsMax, float64(max(r.PodsReady, r.PodsDesired)))
		latMax = math.Max(latMax, r.P99Ms)
	}
	demandMax = niceCeil(demandMax)
	podsMax = niceCeil(podsMax * 1.1)
	s := res.Summary[name]
	text(img, 70, 24, colAxis, fmt.Sprintf("%s, profile %s (seed %d): %s requests, peak %s/s; pods max %d; p99 %.1f ms, worst minute %.1f ms; refused %s, timed out %s",
		name, res.Profile.Name, res.Profile.Seed, count(s.Requests), count(s.PeakDemand), s.MaxPodsReady, s.P99Ms,
		s.WorstMinuteP99Ms, count(s.Refused), count(s.TimedOut)))

	top := &panel{img: img, x0: 70, y0: 50, w: W - 150, h: 300, tMax: tMax, yMax: demandMax, rightMax: podsMax}
	frame(top, "requests/s", "pods")
	for i, r := range rows {
		x0, x1 := top.px(float64(i)), top.px(float64(i+1))
		y := top.py(r.Demand)
		fill(img, x0, y, x1, top.y0+top.h, colDemand)
	}
	series(top, rows, colDesired, true, func(r Second) float64 { return float64(r.PodsDesired) })
	series(top, rows, colReady, true, func(r Second) float64 { return float64(r.PodsReady) })
	legend(img, top.x0+10, top.y0+14, []legendItem{{colDemand, "demand (requests/s, left)"}, {colReady, "pods ready (right)"}, {colDesired, "pods desired (right)"}})

	bottom := &panel{img: img, x0: 70, y0: 400, w: W - 150, h: 260, tMax: tMax, log: true, yMin: 0.1, yMax: math.Pow(10, math.Ceil(math.Log10(latMax*1.5)))}
	frame(bottom, "latency ms (log)", "")
	oy := bottom.py(obj.P99Ms)
	for x := bottom.x0; x < bottom.x0+bottom.w; x += 6 {
		fill(img, x, oy, x+3, oy+2, colObj)
	}
	series(bottom, rows, colP50, false, func(r Second) float64 { return r.P50Ms })
	series(bottom, rows, colP99, false, func(r Second) float64 { return r.P99Ms })
	for i, r := range rows {
		if r.Refused+r.TimedOut >= 0.5 {
			x := bottom.px(float64(i))
			fill(img, x, bottom.y0+bottom.h-8, x+2, bottom.y0+bottom.h, colBad)
		}
	}
	legend(img, bottom.x0+10, bottom.y0+14, []legendItem{{colP99, "p99"}, {colP50, "p50"},
		{colObj, fmt.Sprintf("objective p99 %g ms", obj.P99Ms)}, {colBad, "refused or timed out (ticks)"}})
	text(img, bottom.x0+bottom.w/2-60, H-12, colAxis, "seconds since the start")

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type legendItem struct {
	c     color.RGBA
	label string
}

func legend(img *image.RGBA, x, y int, items []legendItem) {
	for _, it := range items {
		fill(img, x, y-8, x+14, y, it.c)
		text(img, x+18, y, colAxis, it.label)
		x += 18 + 7*len(it.label) + 20
	}
}

func frame(p *panel, left, right string) {
	ticks := 4
	if p.log {
		ticks = int(math.Round(math.Log10(p.yMax / p.yMin)))
	}
	for k := 0; k <= ticks; k++ {
		v := p.yMax * float64(k) / float64(ticks)
		if p.log {
			v = p.yMin * math.Pow(10, float64(k))
		}
		y := p.py(v)
		fill(p.img, p.x0, y, p.x0+p.w, y+1, colGrid)
		text(p.img, p.x0-62, y+4, colAxis, short(v))
		if p.rightMax > 0 {
			text(p.img, p.x0+p.w+6, y+4, colAxis, short(p.rightMax*float64(k)/float64(ticks)))
		}
	}
	step := niceStep(p.tMax / 10)
	for t := 0.0; t <= p.tMax; t += step {
		x := p.px(t)
		fill(p.img, x, p.y0+p.h, x+1, p.y0+p.h+5, colAxis)
		text(p.img, x-10, p.y0+p.h+18, colAxis, fmt.Sprintf("%.0f", t))
	}
	fill(p.img, p.x0, p.y0, p.x0+1, p.y0+p.h, colAxis)
	fill(p.img, p.x0, p.y0+p.h, p.x0+p.w, p.y0+p.h+1, colAxis)
	text(p.img, p.x0-62, p.y0-8, colAxis, left)
	if right != "" {
		text(p.img, p.x0+p.w-10, p.y0-8, colAxis, right)
	}
}

func series(p *panel, rows []Second, c color.RGBA, right bool, v func(Second) float64) {
	prevX, prevY := -1, -1
	for i, r := range rows {
		x := p.px(float64(i) + 0.5)
		var y int
		if right {
			y = p.pyRight(v(r))
		} else {
			if v(r) <= 0 {
				prevX = -1
				continue
			}
			y = p.py(v(r))
		}
		if prevX >= 0 {
			line(p.img, prevX, prevY, x, y, c)
		}
		prevX, prevY = x, y
	}
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		fill(img, x0, y0, x0+2, y0+2, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
}

func text(img *image.RGBA, x, y int, c color.RGBA, s string) {
	d := &font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func short(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.3gk", v/1000)
	case v >= 1 || v == 0:
		return fmt.Sprintf("%.4g", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*mag >= v {
			return m * mag
		}
	}
	return 10 * mag
}

func niceStep(v float64) float64 { return niceCeil(v) }
